"""The serving tests' one stack, as a pytest plugin (conftest's `pytest_plugins`), so that every serving
module shares it: a tiny forecaster, recommender and learned policy through MLflow and serving/package.py
into one Bento, and one real `bentoml serve` of it over loopback HTTP for the modules that need no
server settings of their own."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from supplyml.config import load_config
from supplyml.forecasting.base import Calibration
from supplyml.forecasting.combination import Combination
from supplyml.forecasting.networks import NetworkForecaster
from supplyml.forecasting.statistical import Statistical
from supplyml.recommending.networks import Blend
from supplyml.registry import register
from supplyml.tracking import log_forecaster, log_policy, log_recommender, setup_tracking

SKUS = [f"SKU-{i}" for i in range(6)]
LINEAGE = {
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "dvc_md5": "5d41402abc4b2a76b9719d911017c592.dir",
    "pipeline_run_id": "test-run-1",
    "config_hash": "feedbeef0123",
    "trained_flags": "promo",
}
METRICS = {"wrmsse": 0.81, "mase": 0.92, "wspl": 0.44}
MAX_HORIZON = 30
# The recommender beside it: customers 100..109 buy SKU-0..2, 200..209 buy SKU-3..5; 100 bought SKU-0 most.
CUSTOMERS = [str(c) for g in (100, 200) for c in range(g, g + 10)]
ITEM = {"sku": SKUS[0], "on_hand": 5, "on_order": 0, "lead_time_days": 3, "review_period_days": 7, "service_level": 0.95}
R_LINEAGE = {**LINEAGE, "recommender": json.dumps({"model": "blend", "params": {}})}
P_METRICS = {"total_cost": 12.5, "cycle_service_level": 0.96}


@pytest.fixture(scope="session")
def panel():
    rng = np.random.default_rng(0)
    days = pd.date_range("2011-01-01", periods=120)
    weekly = np.array([1.0, 1.2, 1.4, 1.2, 1.0, 0.2, 0.6])
    return pd.concat(
        [
            pd.DataFrame(
                {"unique_id": sku, "ds": days, "price": 2.0 + i, "y": rng.poisson(level * weekly[days.dayofweek]).astype(float)}
            )
            for i, (sku, level) in enumerate(zip(SKUS, [0.5, 2, 5, 10, 20, 40]))
        ],
        ignore_index=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# One store, one Bento and one server for every serving test module: a process can use one BentoML home only.
@pytest.fixture(scope="session")
def cfg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serving")
    port = free_port()
    return load_config(
        overrides=[
            f"registry.tracking_uri=sqlite:///{tmp}/mlflow.db",
            f"registry.artifact_location={tmp}/mlartifacts",
            f"serving.bentoml_home={tmp}/bentoml",
            f"serving.port={port}",
            "serving.host=127.0.0.1",
            f"serving.max_horizon={MAX_HORIZON}",
            "model.max_epochs=1",
            "model.hidden_size=8",
            "model.num_layers=1",
            "model.context_length=28",
            "model.num_samples=50",
            "model.accelerator=cpu",
            "inventory.num_sample_paths=200",
            "policy.timesteps=3000",
        ]
    )


@contextlib.contextmanager
def tracking_put_back():
    """Packaging and `serve_command` point MLflow at the serving store, which mlflow also exports to the
    environment (MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID): both are put back, or every later test in
    this session would read the serving store."""
    uri, experiment = os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_EXPERIMENT_ID")
    try:
        yield
    finally:
        mlflow.set_tracking_uri(uri)
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        if experiment is not None:
            os.environ["MLFLOW_EXPERIMENT_ID"] = experiment


@pytest.fixture(scope="session")
def bento(cfg, panel):
    """The Bento's tag."""
    from serving.package import bentoml_env

    with tracking_put_back(), pytest.MonkeyPatch.context() as env:
        for k, v in bentoml_env(cfg).items():
            env.setenv(k, v)
        return _package(cfg, panel)


def _package(cfg, panel) -> str:
    from serving.package import package

    # What the pipeline serves: a combination of families, with calibrated levels.
    network = NetworkForecaster.fit(panel, cfg.model, horizon=14, seed=cfg.seed)[0]
    average = Statistical.fit(panel, "window_average", 14)
    forecaster = Combination({"network": network, "window_average": average}, {"network": 0.5, "window_average": 0.5}, panel)
    forecaster.calibration = Calibration(rho=0.3, total=([0.01, 0.5, 0.99], [0.02, 0.55, 0.995]), days=10)
    setup_tracking(cfg)
    with mlflow.start_run():
        uri = log_forecaster(forecaster, cfg)
    version = register(uri, cfg.registry.model_name, {**LINEAGE, "metrics": json.dumps(METRICS)})
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(cfg.registry.model_name, "champion", version.version)
    with mlflow.start_run():
        r_uri = log_recommender(_recommender(), cfg)
    r_version = register(r_uri, cfg.registry.recommender_name, {**R_LINEAGE, "metrics": json.dumps({"ndcg@10/all": 0.5})})
    client.set_registered_model_alias(cfg.registry.recommender_name, "champion", r_version.version)
    p_version = _policy(cfg, panel, forecaster)
    client.set_registered_model_alias(cfg.registry.policy_name, "champion", p_version.version)
    return package(
        cfg,
        {
            "forecast": client.get_model_version(cfg.registry.model_name, version.version),
            "recommend": client.get_model_version(cfg.registry.recommender_name, r_version.version),
            "policy": client.get_model_version(cfg.registry.policy_name, p_version.version),
        },
    )


def _policy(cfg, panel, forecaster):
    """A learned policy as the pipeline's policy-train step trains one: on the forecaster's paths at the reviews
    of the last 28 days (lead time 3, review period 7: inventory.* defaults)."""
    from supplyml.replenishing import lifecycle, real

    (reviews,) = lifecycle.evidence(cfg, panel, [panel["ds"].max() - pd.Timedelta(days=27)], forecaster)
    model = real.fit(reviews, cfg, seed=0)
    example = pd.DataFrame(real.environment(reviews, cfg, 0).reset()[0][:2]).add_prefix("obs_")
    with mlflow.start_run():
        uri = log_policy(model, lifecycle.setting(cfg), example)
    return register(
        uri, cfg.registry.policy_name, {**LINEAGE, "policy": json.dumps(lifecycle.setting(cfg)), "metrics": json.dumps(P_METRICS)}
    )


def _recommender() -> Blend:
    rows = [(c, SKUS[j + (3 if c.startswith("2") else 0)], day) for c in CUSTOMERS for j in range(3) for day in (j, j + 5)]
    rows += [("100", SKUS[0], day) for day in (20, 21, 22)]
    frame = pd.DataFrame(
        [
            {"customer_id": c, "sku": s, "ds": pd.Timestamp("2011-01-01") + pd.Timedelta(days=d), "quantity": 1.0, "value": 1.0}
            for c, s, d in rows
        ]
    )
    model = Blend(architecture="bpr", dim=8, lr=0.05, epochs=30, batch_size=16, seed=0, repeat_slots=1, accelerator="cpu").fit(
        frame, SKUS
    )
    model.descriptions = {s: f"PRODUCT {s}" for s in SKUS}
    return model


@pytest.fixture(scope="session")
def url(cfg, bento):
    with serve(cfg) as (base, _, _):
        yield base


def store_args(cfg) -> list[str]:
    """--set arguments that point the CLI at this module's stores and port."""
    sets = {
        "registry.tracking_uri": cfg.registry.tracking_uri,
        "registry.artifact_location": cfg.registry.artifact_location,
        "serving.bentoml_home": cfg.serving.bentoml_home,
        "serving.port": cfg.serving.port,
        "serving.max_horizon": cfg.serving.max_horizon,
    }
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


@contextlib.contextmanager
def serve(cfg, env: dict | None = None, cli: list[str] | None = None):
    """`bentoml serve` of the champion's Bento with the very command make serve runs, `env` added to the
    server's environment; with `cli`, `supplyml serve` with those arguments starts it (as `make serve
    SET=...` does). Yields its URL, process and log file."""
    from serving.package import bentoml_env, serve_command

    with tracking_put_back():
        cmd = serve_command(cfg) if cli is None else [sys.executable, "-m", "cli", "serve", *store_args(cfg), *cli]
    log_path = Path(cfg.serving.bentoml_home).parent / f"serve-{cfg.serving.port}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env={**os.environ, **bentoml_env(cfg), **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://{cfg.serving.host}:{cfg.serving.port}"
    try:
        deadline = time.monotonic() + 120
        while not _ready(base):
            assert proc.poll() is None, f"bentoml serve exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready in 120 s:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        yield base, proc, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/readyz", timeout=2).status_code == 200
    except requests.RequestException:  # refused, or accepted while the worker still loads the model
        return False


def post(url, path, payload):
    r = requests.post(f"{url}/{path}", json=payload, timeout=60)
    assert r.status_code < 500, r.text
    return r
