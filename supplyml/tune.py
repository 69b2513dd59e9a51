"""Tune: an Optuna study (TPE, pruned on Lightning's val_loss) over the network's architecture and key hyperparameters."""
from __future__ import annotations

import hashlib
import logging
import os

import mlflow
import optuna
import pandas as pd
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

from supplyml.config import OPTUNA_STORAGE_ENV, Config, ModelConfig
from supplyml.forecasting.networks import NetworkForecaster

log = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


SEARCHED = ("architecture", "hidden_size", "num_layers", "learning_rate", "dropout", "context_length")


def param_name(field: str, architecture: str) -> str:
    """Optuna's name for a searched model field: width is per architecture (different scales)."""
    return f"{architecture}_{field}" if field == "hidden_size" else field


def suggest(trial: optuna.Trial, cfg: Config) -> dict:
    """Model fields for one trial. Width is searched per architecture, under its own parameter name,
    because an LSTM's units and an MLP layer's width live on different scales."""
    space = cfg.tune.search_space
    arch = trial.suggest_categorical("architecture", space.architecture)
    width = space.hidden_size[arch]
    return {
        "architecture": arch,
        "hidden_size": trial.suggest_int(param_name("hidden_size", arch), *width, log=True),
        "num_layers": trial.suggest_int("num_layers", *space.num_layers),
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "dropout": trial.suggest_float("dropout", *space.dropout),
        "context_length": trial.suggest_categorical("context_length", space.context_length),
    }


def study_name(cfg: Config, data_md5: str) -> str:
    """Trials are only comparable on the same data, features and search space, so those name the study."""
    key = f"{data_md5}|{cfg.features.model_dump_json()}|{cfg.tune.search_space.model_dump_json()}|{cfg.tune.max_epochs}"
    return f"{cfg.tune.study_name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def storage(cfg: Config) -> optuna.storages.RDBStorage:
    """The study's storage (SUPPLYML_OPTUNA_STORAGE, as a cluster's Secret sets it, else tune.storage). Workers
    beat a heartbeat: a trial whose worker died (killed, preempted) is failed once the grace period passes
    and requeued with the same parameters, instead of staying RUNNING forever."""
    url = os.environ.get(OPTUNA_STORAGE_ENV) or cfg.tune.storage
    return optuna.storages.RDBStorage(
        url, heartbeat_interval=cfg.tune.heartbeat_s, grace_period=cfg.tune.grace_s,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=cfg.tune.max_retry))


def create(cfg: Config, data_md5: str) -> optuna.Study:
    """The study, created once before any worker starts: concurrent create_study calls race
    (optuna#1092). An existing study is resumed; a new one gets the configured model as its first trial,
    which the search must beat."""
    study = optuna.create_study(study_name=study_name(cfg, data_md5), storage=storage(cfg), load_if_exists=True,
                                direction="minimize")
    if not study.trials:
        arch = cfg.model.architecture
        study.enqueue_trial({param_name(f, arch): getattr(cfg.model, f) for f in SEARCHED}, skip_if_exists=True)
    return study


def work(panel: pd.DataFrame, cfg: Config, data_md5: str, tags: dict[str, str], worker: int = 0) -> int:
    """One worker: trials of the shared study until it holds `tune.n_trials` finished ones or
    `tune.timeout_s` passes; returns how many trials this worker ran. Each trial is a nested MLflow run
    under the active one. Workers differ only in their sampler's seed, so they do not propose alike."""
    if cfg.tune.workers > 1:
        # Workers sharing a machine (kfp.local; a node's pods) would each take every core: measured on 2
        # cores, 2 workers ran 8 trials in 107 s that way, 35 s with a core each, 61 s for 1 worker.
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // cfg.tune.workers))
    study = optuna.load_study(
        study_name=study_name(cfg, data_md5), storage=storage(cfg),
        sampler=optuna.samplers.TPESampler(seed=cfg.seed + worker),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    log.info("worker %d on study %s: %d of %d trials finished", worker, study.study_name, done, cfg.tune.n_trials)
    mine = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal mine
        chosen = suggest(trial, cfg)
        trial.set_user_attr("model", chosen)
        trial.set_user_attr("worker", worker)
        params = ModelConfig(**{**cfg.model.model_dump(), **chosen, "max_epochs": cfg.tune.max_epochs})
        mine += 1  # pruned or not
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True, tags={**tags, "worker": str(worker)}):
            mlflow.log_params({**trial.params, "trial": trial.number, "study": study.study_name})
            _, trainer = NetworkForecaster.fit(panel, params, cfg.features.horizon, cfg.features.val_days,
                                               callbacks=[PyTorchLightningPruningCallback(trial, monitor="val_loss")],
                                               seed=cfg.seed)
            val_loss = float(trainer.callback_metrics["val_loss"])
            mlflow.log_metric("val_loss", val_loss)
        return val_loss

    if done < cfg.tune.n_trials:
        study.optimize(objective, timeout=cfg.tune.timeout_s, gc_after_trial=True,
                       callbacks=[optuna.study.MaxTrialsCallback(cfg.tune.n_trials, states=FINISHED)])
    return mine


def finish(cfg: Config, data_md5: str) -> optuna.Study:
    """After every worker: fail what dead workers left RUNNING past the grace period, then the best trial."""
    study = optuna.load_study(study_name=study_name(cfg, data_md5), storage=storage(cfg))
    optuna.storages.fail_stale_trials(study)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise RuntimeError(f"study {study.study_name} has no completed trial; raise tune.timeout_s or tune.n_trials")
    log.info("best trial %d: val_loss %.4f %s", study.best_trial.number, study.best_value, best_model(study))
    return study


def tune(panel: pd.DataFrame, cfg: Config, data_md5: str, tags: dict[str, str]) -> optuna.Study:
    """In one process: create the study, one worker, the best trial. Storage is persistent, so an
    interrupted or repeated run resumes the same study instead of starting over."""
    create(cfg, data_md5)
    work(panel, cfg, data_md5, tags)
    return finish(cfg, data_md5)


def best_model(study: optuna.Study) -> dict:
    """The best trial's model fields (ModelConfig names), whatever the trial's parameter names were."""
    return study.best_trial.user_attrs["model"]
