"""Optuna workers in separate processes on one study in a real PostgreSQL: they share the trials, and a
worker killed mid-trial leaves nothing RUNNING: its trial is failed by the heartbeat and retried."""

import os
import signal
import subprocess
import sys
import time

import mlflow
import optuna
import pytest
from conftest import weekly_panel
from optuna.trial import TrialState

from supplyml import tune
from supplyml.config import OPTUNA_STORAGE_ENV, load_config
from supplyml.forecasting.search import ForecastSearch

pytestmark = pytest.mark.slow


@pytest.fixture
def setup(tmp_path, postgres, monkeypatch, request):
    """Config, panel file and environment for workers on a fresh database; `storage` is the study's URL."""
    url = postgres(request.node.name.lower()[:40])
    monkeypatch.setenv(OPTUNA_STORAGE_ENV, url)  # what a cluster's Secret sets; outranks tune.storage
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    # An experiment another test's fixtures made active (mlflow exports it) does not exist in this store.
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.MlflowClient().search_experiments()  # the schema once, as the pipeline's tune_study step does
    panel = tmp_path / "panel.parquet"
    weekly_panel(days=140, n=4).to_parquet(panel)

    def start(cfg, worker: int) -> subprocess.Popen:
        path = tmp_path / "cfg.json"
        path.write_text(cfg.to_json())
        return subprocess.Popen(
            [sys.executable, "-m", "supplyml.forecasting.search", str(path), str(panel), "test-data", str(worker)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    return url, start


def config(*overrides: str):
    return load_config(
        overrides=[
            "features.horizon=7",
            "features.val_days=7",
            "model.context_length=28",
            "tune.search_space.context_length=[14,28]",
            "model.accelerator=cpu",
            *overrides,
        ]
    )


def search(cfg) -> ForecastSearch:
    return ForecastSearch(None, cfg, "test-data")  # names the study; the workers bring the panel


def trials(cfg) -> list:
    return optuna.load_study(study_name=tune.study_name(cfg, search(cfg)), storage=tune.storage(cfg)).get_trials()


def test_two_workers_share_one_study(setup):
    _, start = setup
    cfg = config("tune.n_trials=6", "tune.max_epochs=1")
    tune.create(cfg, search(cfg))  # once, before the workers (optuna#1092)
    workers = [start(cfg, w) for w in (0, 1)]
    outs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[-3000:] for o in outs]  # the end says why
    done = trials(cfg)
    numbers = [t.number for t in done]
    assert len(numbers) == len(set(numbers)) and sorted(numbers) == list(range(len(numbers)))
    finished = [t for t in done if t.state in tune.FINISHED]
    # Each worker stops once 6 are finished; both may have been mid-trial at the 6th.
    assert 6 <= len(finished) <= 7 and len(finished) == len(done)
    by_worker = {w: sum(t.user_attrs["worker"] == w for t in done) for w in (0, 1)}
    assert by_worker[0] >= 1 and by_worker[1] >= 1
    assert [int(o.strip().splitlines()[-1]) for o in outs] == [by_worker[0], by_worker[1]]  # what each reported
    assert tune.finish(cfg, search(cfg)).best_trial.state == TrialState.COMPLETE


def test_a_killed_worker_leaves_no_trial_running(setup):
    _, start = setup
    # Trials long enough to be killed in the middle; a silent worker is dead after 3 s.
    cfg = config("tune.n_trials=3", "tune.max_epochs=60", "tune.heartbeat_s=1", "tune.grace_s=3")
    tune.create(cfg, search(cfg))
    doomed = start(cfg, 0)
    deadline = time.monotonic() + 180
    while not [t for t in trials(cfg) if t.state == TrialState.RUNNING and t.params]:  # running, its params chosen
        assert doomed.poll() is None and time.monotonic() < deadline, doomed.stdout.read()
        time.sleep(0.2)
    time.sleep(1.0)  # beating, mid-trial
    (killed,) = [t for t in trials(cfg) if t.state == TrialState.RUNNING]
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=30)
    survivor = start(cfg, 1)
    out = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, out
    tune.finish(cfg, search(cfg))
    after = {t.number: t for t in trials(cfg)}
    assert after[killed.number].state == TrialState.FAIL
    retries = [t for t in after.values() if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state in tune.FINISHED and retries[0].params == killed.params
    assert not [t for t in after.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(t.state in tune.FINISHED for t in after.values()) >= 3
