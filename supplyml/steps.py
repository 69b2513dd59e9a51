"""The shared pipeline steps as plain functions over files: reading and gating the data, and tuning and
registering any family's model. Each family's own steps live in its package (`<family>/steps.py`);
each KFP component calls exactly one step.

They move data by paths and small JSON-able values, so they run the same under `kfp.local`, on a
cluster, or straight from a test. Every task (every pod) imports this module afresh: the data steps
do not pay for MLflow, Optuna and the model families (seconds each), which the steps that use them
import.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from supplyml.config import Config
from supplyml.data import content_key, data_file, data_version, parse_days, read_table
from supplyml.features import Split, history_days, plan

if TYPE_CHECKING:
    from supplyml.tune import Search

log = logging.getLogger(__name__)


def ingest(cfg: Config, root: str, raw_out: str) -> dict[str, str]:
    """Read the input (order lines or a daily panel) as it is and record which version it is (DVC md5
    inside data/, checked against the file, else the file's own md5; git commit). A DVC-tracked file
    missing from the checkout (a fresh pod) is pulled from the DVC remote, at `data.rev` when set."""
    path = Path(root) / cfg.data.path  # an absolute data.path (--data) stays as it is
    with data_file(path, root, cfg.data.rev) as local:
        version = data_version(path, root, cfg.data.rev, local=local)  # first: an edited file may not parse
        raw = read_table(local, cfg.data)
    raw.to_parquet(raw_out)
    log.info(
        "ingested %d rows of %s (%s; dvc md5 %s, git %s)",
        len(raw),
        version["data_path"],
        cfg.data.format,
        version["dvc_md5"],
        version["git_commit"][:10],
    )
    return version


def validate(cfg: Config, raw_in: str, docs_dir: str) -> dict:
    """Gate the raw input with the suite for `data.format`; raises DataValidationError (naming the
    file, each failed expectation, its column and example rows) to stop the run."""
    # GX takes seconds to import; only the gating steps pay for it.
    from supplyml import validation

    raw = pd.read_parquet(raw_in)
    report = validation.check(validation.validate_raw(raw, cfg.data, docs_dir=docs_dir)).to_dict()  # logs its summary
    days = history_days(
        parse_days(raw[cfg.data.columns.date if cfg.data.format == "transactions" else cfg.data.panel_columns.ds])
    )
    plan(cfg, days)  # below the days the pipeline can work with, the run stops here in one sentence
    return {**report, "days": days}


def featurize(cfg: Config, raw_in: str, panel_out: str, docs_dir: str) -> dict:
    """Daily demand panel `unique_id, ds, y, price, promo, event`, itself gated by the strict panel
    suite before anything trains on it."""
    from supplyml import validation

    panel = validation.gated_panel(pd.read_parquet(raw_in), cfg, docs_dir)
    panel.to_parquet(panel_out)
    days = history_days(panel["ds"])
    split = Split.from_panel(panel, plan(cfg, days).features)
    return {
        "series": int(panel["unique_id"].nunique()),
        "rows": len(panel),
        "days": days,
        "val_start": str(split.val_start.date()),
        "test_start": str(split.test_start.date()),
        "end": str(split.end.date()),
    }


def _search(cfg: Config, lineage: dict, family: str, frame: pd.DataFrame | None = None) -> tuple[Config, Search]:
    """The config planned for the run's history, with tracking set up, and the family's tuning search
    (over `frame`, for a worker) that the three tune steps share."""
    from supplyml import families, tracking

    cfg = plan(cfg, lineage["history_days"])
    tracking.setup_tracking(cfg)
    return cfg, families.get(family).part("search").tuning_search(cfg, frame, content_key(lineage))


def tune_study(cfg: Config, lineage: dict, family: str) -> str:
    """Create (or resume) the family's study before any worker starts, and the MLflow run its trials
    nest under; returns that run's id."""
    import mlflow

    from supplyml import tune as tuning

    cfg, search = _search(cfg, lineage, family)
    study = tuning.create(cfg, search)
    with mlflow.start_run(run_name=f"tune-{family}", tags=lineage_tags({**lineage, "optuna_study": study.study_name})) as run:
        mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
        mlflow.log_params({"study": study.study_name, "workers": cfg.tune.workers, "n_trials": cfg.tune.n_trials})
    return run.info.run_id


def tune_worker(cfg: Config, data_in: str, lineage: dict, run_id: str, worker: int, family: str) -> int:
    """One Optuna worker of the family's study; its trials nest under `run_id`."""
    import mlflow

    from supplyml import tune as tuning

    cfg, search = _search(cfg, lineage, family, pd.read_parquet(data_in))
    with mlflow.start_run(run_id=run_id):
        return tuning.work(search, cfg, lineage_tags(lineage), worker)


def tune_best(cfg: Config, lineage: dict, run_id: str, family: str) -> dict:
    """After the workers: the best hyperparameters, logged on the tune run."""
    import mlflow

    from supplyml import tune as tuning

    cfg, search = _search(cfg, lineage, family)
    study = tuning.finish(cfg, search)
    best = tuning.best_model(study)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params({f"best.{k}": v for k, v in best.items()})
        mlflow.log_metric(f"best_{search.metric}", study.best_value)
    return {"params": best, "study": study.study_name, "trial": study.best_trial.number, "value": study.best_value}


def register_version(cfg: Config, name: str, model_uri: str, verdict: dict, tags: dict) -> dict:
    """Register a version with `tags`, its verdict and gate reasons; move `champion` to it if the gate
    said so and the champion is still the one it was judged against."""
    from supplyml import registry

    version = registry.register(model_uri, name, {**tags, "verdict": json.dumps(verdict), "gate": "; ".join(verdict["reasons"])})
    reasons, promoted = list(verdict["reasons"]), False
    if verdict["promote"]:
        try:
            registry.move_champion(
                name,
                version.version,
                expected=verdict["champion_version"],
                action="promote",
                by="pipeline",
                why="passed the gate",
                lock=registry.lock_path(cfg.workdir),
                figures={"challenger": verdict["challenger"], "champion": verdict["champion"]},
            )
            promoted = True
        except registry.RegistryError as e:  # another promotion won the race: this one judged a stale champion
            reasons.append(str(e))
            log.warning("%s", e)
    champion = registry.champion_version(name)
    return {
        "name": name,
        "version": version.version,
        "promoted": promoted,
        "reasons": reasons,
        "champion": champion.version if champion else None,
        "verdict": verdict,
    }


def lineage_tags(lineage: dict) -> dict[str, str]:
    return {k: str(v) for k, v in lineage.items()}
