import contextlib
import io
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

REPO = Path(__file__).resolve().parent.parent
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    # Each test worker (`make test` runs one per core) and the processes it starts take their share of the
    # cores: torch's threads stall when another worker holds a core (a tuning step ran 6x slower).
    THREADS = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = THREADS
# Each file runs whole on one worker (--dist loadfile), in the order of this hook (--no-loadscope-reorder):
# longest first, so that the short files fill in at the end instead of one worker finishing a long file
# alone (longest-processing-time scheduling). Worker-seconds per file, from a clean-clone `make test`;
# unlisted files take under 5 s.
SECONDS = {
    "test_pipeline.py": 186,
    "test_lifecycle.py": 166,
    "test_learned_policy.py": 64,
    "test_serving_ops.py": 48,
    "test_serving_contract.py": 43,
    "test_compute.py": 42,
    "test_serving.py": 36,
    "test_data_shapes.py": 33,
    "test_tune_workers.py": 33,
    "test_monitor.py": 27,
    "test_packaging.py": 24,
    "test_backtest.py": 21,
    "test_recommending.py": 14,
    "test_registry.py": 12,
    "test_selection.py": 12,
    "test_forecaster.py": 11,
    "test_recommend_gate.py": 9,
    "test_validation.py": 8,
    "test_deepfm.py": 7,
    "test_policy_gate.py": 7,
    "test_tracking_server.py": 6,
    "test_data_pull.py": 5,
}


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: -SECONDS.get(item.path.name, 0))  # stable: each file keeps its own order


pytest_plugins = ["serving_stack"]  # the serving tests' one Bento and server (it imports torch: after the above)


# A small slice that still goes through every real step: ~50 SKUs, 2 trials, 1-2 epochs.
# The 2-epoch slice is not judged against the peers (AutoETS beats it there): the tests judge the lifecycle.
SMALL = [
    "features.max_series=50",
    "tune.n_trials=2",
    "tune.max_epochs=1",
    "model.max_epochs=2",
    "model.num_samples=50",
    "recommend.params.epochs=2",
    "recommend.search_space.architecture=[bpr]",  # a deepfm trial costs 30 s; tests/test_deepfm.py fits it
    "policy.timesteps=2000",
    "gate.must_match_best_peer=false",
    # One LightGBM thread per test worker: a second one on the core the other worker holds makes LightGBM's
    # OpenMP threads wait on each other (the any-shop test took 88 s beside a busy core, 29 s with 1).
    "evaluation.n_jobs=1",
    "gate.resamples=1999",  # p-values to 0.0005 and intervals a little coarser: every verdict here is far from its bar
]


def stores(tmp: Path) -> list[str]:
    """Config overrides that put every local store (MLflow, Optuna, KFP, Bentos) under `tmp`."""
    return [f"workdir={tmp}"]


def _put_tracking_back():
    """`mlflow.set_tracking_uri` and `mlflow.set_experiment` also export MLFLOW_TRACKING_URI and
    MLFLOW_EXPERIMENT_ID, which child processes inherit: a test or a module's fixture that sets them must
    not send later tests' runs into its own store or experiment."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    experiment = os.environ.get("MLFLOW_EXPERIMENT_ID")
    yield
    mlflow.set_tracking_uri(before)
    if experiment is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = experiment


_tracking_uri_not_leaked = pytest.fixture(autouse=True)(_put_tracking_back)
# Autouse fixtures of a scope set up before the others of that scope: this one sees the module as it began.
_tracking_uri_not_leaked_by_a_module = pytest.fixture(autouse=True, scope="module")(_put_tracking_back)


def rejected(report):
    """The DataValidationError that gating `report` raises; it carries the report it failed on."""
    from supplyml.validation import DataValidationError, check

    with pytest.raises(DataValidationError) as info:
        check(report)
    assert info.value.report is report and not report.success
    return info.value


def supplyml(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`supplyml ARGS` as a user's shell runs it (no MLflow URI or experiment exported; `env` added), but in
    this process: `cli.main` itself, without a child's 4 s of imports. Its return code, what it printed,
    and its log lines as stderr; MLflow's tracking URI and the environment are put back after."""
    from cli.main import main

    out, err = io.StringIO(), io.StringIO()
    handler, root = logging.StreamHandler(err), logging.getLogger()
    level, environment, before = root.level, dict(os.environ), os.environ.get("MLFLOW_TRACKING_URI")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        os.environ.pop(name, None)
    os.environ.update(env or {})
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.chdir(REPO)  # where a user runs it, as the child processes do: relative paths resolve from there
        root.addHandler(handler)
        root.setLevel(logging.INFO)  # as the CLI's basicConfig sets it in its own process
        try:
            code = main(list(args))
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
            mlflow.set_tracking_uri(before)
            os.environ.clear()  # what the command exported (BENTOML_HOME, MLflow's URI) goes with it
            os.environ.update(environment)
    return subprocess.CompletedProcess(["supplyml", *args], code, out.getvalue(), err.getvalue())


@dataclass
class Run:
    returncode: int
    output: str


def run_pipeline(tmp: Path, *extra: str) -> Run:
    """`supplyml pipeline run` in a child process, exactly as a user runs it, on stores under `tmp`."""
    args = [a for o in [*stores(tmp), *SMALL] for a in ("--set", o)]
    # As from a user's shell: a store that another test's fixture exported (mlflow does) is not this run's.
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")}
    env["PYTHONUNBUFFERED"] = "1"  # a pipe would hold stdout back while stderr goes through
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "pipeline", "run", *args, *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # interleaved, as on the user's terminal
        text=True,
        timeout=900,
        env=env,
    )
    return Run(proc.returncode, proc.stdout)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One real pipeline run on a small slice, shared by the integration and serving tests."""
    tmp = tmp_path_factory.mktemp("stack")
    # AutoETS sits out of selection here (its refits at five validation origins are a third of train's
    # time); test_peers checks its forecasts, test_backtest scores it as a peer.
    run = run_pipeline(tmp, "--set", "selection.max_series.auto_ets=0")
    assert run.returncode == 0, run.output[-5000:]
    return tmp, run


@pytest.fixture(scope="session")
def server(stack):
    """`bentoml serve` of the Bento the pipeline built, on a free loopback port."""
    import os
    import socket
    import time

    import requests

    tmp, _ = stack
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "BENTOML_HOME": str(tmp / "bentoml")}
    bentoml = Path(sys.executable).with_name("bentoml")
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(bentoml), "serve", "supplyml_forecast:latest", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp / "serve.log").read_text()[-3000:]
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # refused, or accepted while the worker still loads
                pass
            time.sleep(1)
        else:
            raise TimeoutError("bentoml serve did not become ready in 120 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def weekly_panel(days: int = 120, n: int = 6, seed: int = 0):
    """n Poisson series with a weekly profile, series i at level 3(i + 1), from 2022-01-01."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    ds = pd.date_range("2022-01-01", periods=days)
    weekly = np.array([1.0, 1.2, 1.4, 1.2, 1.0, 0.3, 0.6])
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "unique_id": f"S{i}",
                    "ds": ds,
                    "y": rng.poisson((i + 1) * 3 * weekly[ds.dayofweek]).astype(float),
                    "price": 2.0,
                    "promo": 0.0,
                    "event": 0.0,
                }
            )
            for i in range(n)
        ],
        ignore_index=True,
    )


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL server (pgserver's bundled binaries) for this test session, on a Unix socket;
    yields `database(name) -> SQLAlchemy URL`, creating each database once. Stopped and removed after."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    socket_dir = server.get_uri().split("host=")[1]
    made = set()

    def database(name: str) -> str:
        if name not in made:
            server.psql(f'CREATE DATABASE "{name}";')
            made.add(name)
        return f"postgresql+psycopg2://postgres:@/{name}?host={socket_dir}"

    yield database
    server.cleanup()
