"""The pipeline's steps as plain functions over files: each KFP component calls exactly one of these.

They move data by paths and small JSON-able values, so they run the same under `kfp.local`, on a
cluster, or straight from a test.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pandas as pd

from supplyml import backtest, gate, lifecycle, planning, registry, tracking
from supplyml import tune as tuning
from supplyml.baselines import DEFAULT_PEERS
from supplyml.config import Config
from supplyml.data import data_file, data_version, read_table
from supplyml.features import Split, build_panel, to_daily
from supplyml.forecasting import load
from supplyml.train import train_final

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
    log.info("ingested %d rows of %s (%s; dvc md5 %s, git %s)", len(raw), version["data_path"],
             cfg.data.format, version["dvc_md5"], version["git_commit"][:10])
    return version


def validate(cfg: Config, raw_in: str, docs_dir: str) -> dict:
    """Gate the raw input with the suite for `data.format`; raises DataValidationError (naming the
    file, each failed expectation, its column and example rows) to stop the run."""
    # GX takes seconds to import; only the gating steps pay for it.
    from supplyml import validation
    report = validation.validate_raw(pd.read_parquet(raw_in), cfg.data, docs_dir=docs_dir)  # logs its summary
    return validation.check(report).to_dict()


def featurize(cfg: Config, raw_in: str, panel_out: str, docs_dir: str) -> dict:
    """Daily demand panel `unique_id, ds, y, price, promo, event`, itself gated by the strict panel
    suite before anything trains on it."""
    from supplyml import validation
    raw = pd.read_parquet(raw_in)
    panel = build_panel(to_daily(raw, cfg.data), cfg.features)
    validation.check(validation.validate_panel(panel, docs_dir=docs_dir))  # logs its summary
    panel.to_parquet(panel_out)
    split = Split.from_panel(panel, cfg.features)
    return {"series": int(panel["unique_id"].nunique()), "rows": len(panel),
            "val_start": str(split.val_start.date()), "test_start": str(split.test_start.date()),
            "end": str(split.end.date())}


def tune_study(cfg: Config, lineage: dict) -> str:
    """Create (or resume) the study before any worker starts, and the MLflow run its trials nest under;
    returns that run's id."""
    tracking.setup_tracking(cfg)
    study = tuning.create(cfg, lineage["dvc_md5"])
    with mlflow.start_run(run_name="tune", tags=_tags({**lineage, "optuna_study": study.study_name})) as run:
        mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
        mlflow.log_params({"study": study.study_name, "workers": cfg.tune.workers, "n_trials": cfg.tune.n_trials})
    return run.info.run_id


def tune_worker(cfg: Config, panel_in: str, lineage: dict, run_id: str, worker: int) -> int:
    """One Optuna worker over train days, scored on validation days; its trials nest under `run_id`."""
    tracking.setup_tracking(cfg)
    panel = pd.read_parquet(panel_in)
    fit = Split.from_panel(panel, cfg.features).fit(panel)
    with mlflow.start_run(run_id=run_id):
        return tuning.work(fit, cfg, lineage["dvc_md5"], _tags(lineage), worker)


def tune_best(cfg: Config, lineage: dict, run_id: str) -> dict:
    """After the workers: the best hyperparameters, logged on the tune run."""
    tracking.setup_tracking(cfg)
    study = tuning.finish(cfg, lineage["dvc_md5"])
    best = tuning.best_model(study)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params({f"best.{k}": v for k, v in best.items()})
        mlflow.log_metric("best_val_loss", study.best_value)
    return {"params": best, "study": study.study_name, "trial": study.best_trial.number, "val_loss": study.best_value}


def train(cfg: Config, panel_in: str, best: dict, lineage: dict, model_out: str) -> str:
    """Choose, calibrate and fit what to serve on train + validation days; returns the MLflow run id that
    holds it. The selection evidence travels with the model (selection.json) to the gate."""
    tracking.setup_tracking(cfg)
    panel = pd.read_parquet(panel_in)
    fit = Split.from_panel(panel, cfg.features).fit(panel)
    # The known-future flags the model learnt from: the server refuses the others instead of feeding a
    # network an input it never saw.
    flags = ",".join(f for f in planning.FLAGS if fit[f].any())
    tags = _tags({**lineage, "optuna_study": best["study"], "optuna_trial": best["trial"], "trained_flags": flags})
    with mlflow.start_run(run_name="train", tags=tags) as run:
        mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
        mlflow.log_params({f"data.{k}": v for k, v in lineage.items()})
        forecaster, evidence = train_final(fit, cfg, best["params"])
        forecaster.save(model_out)
        (Path(model_out) / "selection.json").write_text(json.dumps(evidence, default=float))
    return run.info.run_id


def evaluate_model(cfg: Config, panel_in: str, model_in: str, run_id: str, report_out: str) -> dict:
    """Score the model on the held-out horizon against peers, replay the replenishment policies, judge it
    against the champion on the same days (the gate), and write the HTML report; everything also goes
    to the training run. Returns the metric table and the verdict."""
    tracking.setup_tracking(cfg)
    panel = pd.read_parquet(panel_in)
    split = Split.from_panel(panel, cfg.features)
    forecaster = load(model_in)  # history ends where the test horizon starts
    result = backtest.Backtest.from_origins(
        [backtest.evaluate_origin(panel, split.test_start, forecaster, cfg, DEFAULT_PEERS)])
    table = result.table()
    log.info("evaluation on %s .. %s\n%s\n%s", split.test_start.date(), split.end.date(),
             backtest.format_table(table), backtest.format_table(result.inventory))
    selection = json.loads((Path(model_in) / "selection.json").read_text())
    verdict = lifecycle.judge(cfg, panel, split.test_start, forecaster, selection, alone=gate.figures(result, cfg))
    log.info("%s\n%s", verdict.summary(), backtest.format_table(verdict.table()))
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"test_{k}": v for k, v in table.loc[backtest.MODEL].items()})
        mlflow.log_metrics(result.inventory_metrics())
        mlflow.log_metrics({f"gate.{who}.{k}": v for who, figs in (("challenger", verdict.challenger),
                                                                   ("champion", verdict.champion or {}))
                            for k, v in figs.items()})
        mlflow.set_tags({"gate.promote": str(verdict.promote), "gate.champion_version": str(verdict.champion_version)})
        mlflow.log_dict(verdict.to_dict(), "evaluation/verdict.json")
        mlflow.log_table(table.reset_index(), "evaluation/metrics.json")
        mlflow.log_table(result.inventory.reset_index(), "evaluation/inventory.json")
        lifecycle.log_evidence(panel)  # what `supplyml model promote` judges this version on later
        report = result.report(panel, cfg, "supplyml evaluation on the held-out horizon",
                               lineage=mlflow.get_run(run_id).data.tags, gate=(verdict.table(), verdict.reasons))
        mlflow.log_text(report, "evaluation/report.html")
    Path(report_out).write_text(report)
    return {"metrics": {name: row.to_dict() for name, row in table.iterrows()}, "verdict": verdict.to_dict(),
            "holdout_start": str(split.test_start.date())}


def register(cfg: Config, panel_in: str, model_in: str, run_id: str, evaluation: dict, lineage: dict) -> dict:
    """Log the forecaster (its history through the data's last day) as an MLflow model, register a
    version with lineage and its verdict, and move `champion` to it if the gate said so and the
    champion is still the one it was judged against."""
    tracking.setup_tracking(cfg)
    forecaster = load(model_in)
    forecaster = forecaster.with_history(pd.read_parquet(panel_in))  # serve forecasts from the day after the data ends
    name = cfg.registry.model_name
    verdict = evaluation["verdict"]
    with mlflow.start_run(run_id=run_id):
        model_uri = tracking.log_forecaster(forecaster, cfg)
    run_tags = mlflow.get_run(run_id).data.tags
    tags = {k: v for k, v in run_tags.items() if not k.startswith(("mlflow.", "gate."))}
    version = registry.register(model_uri, name, {
        **tags, "metrics": json.dumps(evaluation["metrics"][backtest.MODEL]), "holdout_start": evaluation["holdout_start"],
        "verdict": json.dumps(verdict), "gate": "; ".join(verdict["reasons"])})
    reasons, promoted = list(verdict["reasons"]), False
    if verdict["promote"]:
        try:
            registry.move_champion(name, version.version, expected=verdict["champion_version"], action="promote",
                                   by="pipeline", why="passed the gate", lock=lifecycle.lock_path(cfg),
                                   figures={"challenger": verdict["challenger"], "champion": verdict["champion"]})
            promoted = True
        except registry.RegistryError as e:  # another promotion won the race: this one judged a stale champion
            reasons.append(str(e))
            log.warning("%s", e)
    champion = registry.champion_version(name)
    return {"name": name, "version": version.version, "promoted": promoted, "reasons": reasons,
            "champion": champion.version if champion else None, "verdict": verdict}


def _tags(lineage: dict) -> dict[str, str]:
    return {k: str(v) for k, v in lineage.items()}
