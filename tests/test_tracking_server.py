"""The pipeline against a real MLflow tracking server as a team runs it: `supplyml tracking-server` on
PostgreSQL with basic auth and proxied artifacts, and the client commands' check of their credentials."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import requests
from conftest import REPO, SMALL, run_pipeline, stores
from mlflow import MlflowClient

MODEL = "supplyml-forecaster"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_server_refuses_to_start_without_its_secrets(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")}
    proc = cli("tracking-server", "--set", f"workdir={tmp_path}", env=env)
    assert proc.returncode == 1
    line = last_line(proc.stderr)
    assert "MLFLOW_AUTH_ADMIN_PASSWORD and MLFLOW_FLASK_SERVER_SECRET_KEY" in line and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow-server").exists()  # nothing written: it stopped before the auth config


def test_mlflow_reads_the_auth_settings_written_from_the_config(tmp_path, monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    from supplyml import tracking_server
    from supplyml.config import load_config

    cfg = load_config(overrides=[f"workdir={tmp_path}", "registry.server.auth_cache_ttl_seconds=5"]).resolved(REPO)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tracking_server.auth_ini(cfg)))
    auth = read_auth_config()
    assert (auth.auth_cache_ttl_seconds, auth.default_permission, auth.admin_username) == (5, "READ", "admin")
    assert auth.database_uri == f"sqlite:///{tmp_path.resolve()}/mlflow-server/auth.db"


def test_a_client_command_names_an_unreachable_server(tmp_path):
    proc = cli(
        "model", "list", *(a for o in stores(tmp_path) for a in ("--set", o)), "--set", "registry.tracking_uri=http://127.0.0.1:9"
    )
    assert proc.returncode == 1
    assert "MLflow tracking server http://127.0.0.1:9 is unreachable" in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr


@dataclass
class Server:
    url: str
    password: str
    artifacts: Path
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory, postgres):
    """`supplyml tracking-server` on PostgreSQL (runs, registry and users), a fresh admin password, and
    artifacts proxied to a temp folder; its whole process group is stopped afterwards."""
    tmp = tmp_path_factory.mktemp("tracking")
    port, password = free_port(), secrets.token_urlsafe(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(MLFLOW_AUTH_ADMIN_PASSWORD=password, MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
    artifacts, log_path = tmp / "artifacts", tmp / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "tracking-server",
            "--port",
            str(port),
            "--backend-store-uri",
            postgres("mlflow"),
            "--artifacts-destination",
            str(artifacts),
            "--set",
            f"workdir={tmp / 'workdir'}",
            "--set",
            f"registry.server.auth_database_uri={json.dumps(postgres('mlflow_auth'))}",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet
                pass
            time.sleep(1)
        else:
            raise TimeoutError(f"the tracking server did not answer /health in 240 s: {log_path.read_text()[-3000:]}")
        yield Server(url, password, artifacts, log_path)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # mlflow server, its uvicorn workers
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def admin(server, monkeypatch):
    """The admin's credentials where MLflow clients read them, here and in child processes."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # it would outrank --set registry.tracking_uri
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.password)
    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


@pytest.fixture(scope="module")
def trained(server, tmp_path_factory):
    """One small-slice pipeline run against the server, its local stores under a temp folder. A statistical
    recipe: what this module tests is where runs, versions and artifacts go, which the tuned network's
    path through the same tracking calls does not change (test_pipeline runs that path)."""
    tmp = tmp_path_factory.mktemp("client")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        mp.setenv("MLFLOW_TRACKING_PASSWORD", server.password)
        # after stores(): the server wins
        run = run_pipeline(
            tmp,
            "--set",
            f"registry.tracking_uri={server.url}",
            "--set",
            "selection.candidates=[seasonal_naive]",
            "--set",
            "pipeline.recommend=false",
            "--set",
            "pipeline.policy=false",
            "--set",
            "features.max_series=25",
        )
    assert run.returncode == 0, run.output[-5000:]
    return tmp, run


@pytest.mark.slow
def test_the_pipeline_registers_its_champion_on_the_server_with_proxied_artifacts(server, trained, admin):
    tmp, run = trained
    assert "Champion: supplyml-forecaster version 1;" in run.output
    champion = admin.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == "1" and champion.tags["pipeline_run_id"]
    experiment = admin.get_experiment_by_name("supplyml")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's store, not a client path
    assert admin.get_model_version_download_uri(MODEL, "1").startswith("mlflow-artifacts:")
    assert list(server.artifacts.rglob("MLmodel"))  # the files went through the server into its destination
    # Nothing landed in the client's own stores: the --set after stores() won.
    assert not (tmp / "mlflow.db").exists() and not (tmp / "mlartifacts").exists()


@pytest.mark.slow
def test_owner_and_batch_commands_read_the_champion_from_the_server(server, trained, admin):
    tmp, _ = trained
    sets = [a for o in [*stores(tmp), *SMALL, f"registry.tracking_uri={server.url}"] for a in ("--set", o)]
    listing = cli("model", "list", *sets)
    assert listing.returncode == 0, listing.stderr[-3000:]
    assert "champion" in listing.stdout and "Champion moves" in listing.stdout
    out = tmp / "forecasts.parquet"
    predict = cli("predict", "--out", str(out), "--horizon", "7", *sets)
    assert predict.returncode == 0, predict.stderr[-3000:]
    frame = pd.read_parquet(out)
    assert frame["sku"].nunique() == 25 and len(frame) == 25 * 7
    assert "from supplyml-forecaster version 1" in predict.stdout


@pytest.mark.slow
def test_a_wrong_password_stops_the_run_before_kubeflow_starts(server, trained, admin, tmp_path, monkeypatch):
    experiment = admin.get_experiment_by_name("supplyml").experiment_id
    runs = len(admin.search_runs([experiment]))
    versions = len(admin.search_model_versions(f"name='{MODEL}'"))
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-" + server.password)
    run = run_pipeline(
        tmp_path,
        "--set",
        f"registry.tracking_uri={server.url}",
        "--set",
        "pipeline.recommend=false",
        "--set",
        "pipeline.policy=false",
    )
    assert run.returncode == 1
    assert f"MLflow tracking server {server.url} rejected the password of user 'admin' (HTTP 401)" in last_line(run.output)
    assert "MLFLOW_TRACKING_PASSWORD" in last_line(run.output) and "Traceback" not in run.output
    assert not (tmp_path / "kfp").exists()  # kfp.local never started a task
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.password)
    assert len(admin.search_runs([experiment])) == runs
    assert len(admin.search_model_versions(f"name='{MODEL}'")) == versions
