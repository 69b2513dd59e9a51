"""Tune: an Optuna study per model family, shared by any number of workers, each trial a nested MLflow run.

A family says what it tunes through a `Search`: its name, the direction, what makes trials comparable,
the configured model as the first trial, and the objective. Everything else (storage, heartbeats,
workers, the trial budget, best-trial lookup) is the same for every family.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Literal, Protocol

import mlflow
import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from supplyml.config import OPTUNA_STORAGE_ENV, Config

log = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class Search(Protocol):
    family: str  # names the study
    metric: str  # what the objective returns, logged on each trial's run

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        """Whether Optuna minimizes or maximizes `metric`; read only (a class constant in every family)."""

    def key(self) -> str:
        """Data, features and search space: trials are only comparable when these match."""

    def first_trials(self) -> list[dict]:
        """Optuna params of the configured model, the first trial that the search must beat, then of any
        recipe the family wants every study to try."""

    def objective(self, trial: optuna.Trial) -> float:
        """Suggest, fit, score; sets the trial's user attr "model" to the model fields it chose."""


def study_name(cfg: Config, search: Search) -> str:
    key = f"{search.key()}|{cfg.tune.max_epochs}"
    return f"{cfg.tune.study_name}-{search.family}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def storage(cfg: Config) -> optuna.storages.RDBStorage:
    """The study's storage (SUPPLYML_OPTUNA_STORAGE, as a cluster's Secret sets it, else tune.storage). Workers
    beat a heartbeat: a trial whose worker died (killed, preempted) is failed once the grace period passes
    and requeued with the same parameters, instead of staying RUNNING forever."""
    url = os.environ.get(OPTUNA_STORAGE_ENV) or cfg.tune.storage
    return optuna.storages.RDBStorage(
        url,
        heartbeat_interval=cfg.tune.heartbeat_s,
        grace_period=cfg.tune.grace_s,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=cfg.tune.max_retry),
    )


def create(cfg: Config, search: Search) -> optuna.Study:
    """The study, created once before any worker starts: concurrent create_study calls race
    (optuna#1092). An existing study is resumed; a new one gets the configured model as its first trial."""
    study = optuna.create_study(
        study_name=study_name(cfg, search), storage=storage(cfg), load_if_exists=True, direction=search.direction
    )
    if not study.trials:
        for params in search.first_trials():
            study.enqueue_trial(params, skip_if_exists=True)
    return study


def work(search: Search, cfg: Config, tags: dict[str, str], worker: int = 0) -> int:
    """One worker: trials of the shared study until it holds `tune.n_trials` finished ones or
    `tune.timeout_s` passes; returns how many trials this worker ran. Each trial is a nested MLflow run
    under the active one. Workers differ only in their sampler's seed, so they do not propose alike."""
    if cfg.tune.workers > 1:
        import torch  # here, not at the top: the study and best-trial steps need no torch

        # Workers sharing a machine (kfp.local; a node's pods) would each take every core: measured on 2
        # cores, 2 workers ran 8 trials in 107 s that way, 35 s with a core each, 61 s for 1 worker.
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // cfg.tune.workers))
    study = optuna.load_study(
        study_name=study_name(cfg, search),
        storage=storage(cfg),
        sampler=optuna.samplers.TPESampler(seed=cfg.seed + worker),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    log.info("worker %d on study %s: %d of %d trials finished", worker, study.study_name, done, cfg.tune.n_trials)
    mine = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal mine
        mine += 1  # pruned or not
        trial.set_user_attr("worker", worker)
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True, tags={**tags, "worker": str(worker)}):
            try:
                value = search.objective(trial)
            finally:  # a pruned trial's params too
                mlflow.log_params({**trial.params, "trial": trial.number, "study": study.study_name})
            mlflow.log_metric(search.metric, value)
        return value

    if done < cfg.tune.n_trials:
        study.optimize(
            objective,
            timeout=cfg.tune.timeout_s,
            gc_after_trial=True,
            callbacks=[optuna.study.MaxTrialsCallback(cfg.tune.n_trials, states=FINISHED)],
        )
    return mine


def finish(cfg: Config, search: Search) -> optuna.Study:
    """After every worker: fail what dead workers left RUNNING past the grace period, then the best trial."""
    study = optuna.load_study(study_name=study_name(cfg, search), storage=storage(cfg))
    optuna.storages.fail_stale_trials(study)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise RuntimeError(f"study {study.study_name} has no completed trial; raise tune.timeout_s or tune.n_trials")
    log.info("best trial %d: %s %.4f %s", study.best_trial.number, search.metric, study.best_value, best_model(study))
    return study


def tune(search: Search, cfg: Config, tags: dict[str, str]) -> optuna.Study:
    """In one process: create the study, one worker, the best trial. Storage is persistent, so an
    interrupted or repeated run resumes the same study instead of starting over."""
    create(cfg, search)
    work(search, cfg, tags)
    return finish(cfg, search)


def best_model(study: optuna.Study) -> dict:
    """The best trial's model fields, whatever the trial's parameter names were."""
    return study.best_trial.user_attrs["model"]
