"""`supplyml bench`: the rolling-origin benchmark of the stack's model recipe against its peers on any dataset.

Tuning runs once, on the days before the first origin, so no origin is scored with hyperparameters
that saw its answers. At every origin the recipe then runs as the pipeline's train step does: the
candidates are scored on validation origins before it, the combination is chosen and calibrated
there, and its members are refitted on every day before the origin. Everything lands in DIR
(results.json, forecasts.parquet, report.html) and in one MLflow run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import mlflow
import pandas as pd

from supplyml import compute, tracking
from supplyml import tune as tuning
from supplyml.config import Config, ConfigError, ModelConfig
from supplyml.data import content_key, data_version
from supplyml.features import history_days, plan
from supplyml.forecasting import Forecaster, backtest
from supplyml.forecasting.peers import BENCH_PEERS
from supplyml.forecasting.search import ForecastSearch
from supplyml.forecasting.selection import select
from supplyml.replenishing import lifecycle as policies
from supplyml.validation import load_panel

log = logging.getLogger(__name__)


@compute.distributed
def run(cfg: Config, out_dir: str | Path, root: str | Path = ".") -> dict:
    if unknown := sorted(set(cfg.evaluation.peer_max_series) - set(BENCH_PEERS)):  # a misspelt cap would cap nothing
        raise ConfigError(f"evaluation.peer_max_series has unknown names {unknown}; choose from {sorted(BENCH_PEERS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    version = data_version(cfg.data.path, root)
    panel = load_panel(cfg, docs_dir=out / "data_docs")
    cfg = plan(cfg, history_days(panel["ds"]), held_out=cfg.evaluation.origins)
    starts = backtest.origins(panel, cfg.features.horizon, cfg.evaluation.origins)
    tracking.setup_tracking(cfg)
    tags = {**version, "supplyml.kind": "bench"}
    with mlflow.start_run(run_name="bench", tags=tags) as run:
        mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
        t0 = time.perf_counter()
        # Its own study: tuned on the days before the first origin, not the pipeline's split.
        search = ForecastSearch(panel[panel["ds"] < starts[0]], cfg, f"{content_key(version)}|bench-{starts[0].date()}")
        study = tuning.tune(search, cfg, tags)
        best = tuning.best_model(study)
        tune_seconds = time.perf_counter() - t0
        mlflow.log_params({f"best.{k}": v for k, v in best.items()})
        params = ModelConfig(**{**cfg.model.model_dump(), **best})

        selections = []

        def fit_champion(fit: pd.DataFrame) -> Forecaster:
            model, evidence = select(fit, cfg, params)
            selections.append(evidence)
            return model

        n_series = panel["unique_id"].nunique()
        peers = [p for p in BENCH_PEERS if n_series <= cfg.evaluation.peer_max_series.get(p, n_series)]
        result = backtest.run(panel, cfg, fit_champion, peers)
        table = result.table()
        # What /replenish would serve, by the pipeline's rule on these origins' paired units.
        served = policies.textbook(cfg, result.units)
        log.info("served policy: %s\n%s", served["served"], "\n".join(f"  - {r}" for r in served["reasons"]))
        summary = {
            "data": version,
            "series": int(panel["unique_id"].nunique()),
            "days": int(panel["ds"].nunique()),
            "origins": [str(s.date()) for s in starts],
            "horizon": cfg.features.horizon,
            "champion": {"params": best, "tune_seconds": tune_seconds, "optuna_study": study.study_name},
            "average": _records(table),
            "per_origin": _records(result.per_origin.assign(origin=result.per_origin["origin"].dt.date.astype(str)), index=False),
            "inventory": {**_records(result.inventory), "settings": cfg.inventory.model_dump()},
            "calibration": result.calibration(cfg.inventory.service_level),
            "served_policy": {**served, "row": backtest.POLICIES[served["simulation"]]},
            "selection": selections,
            "seconds": time.perf_counter() - started,
            "mlflow_run_id": run.info.run_id,
        }
        (out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
        champion = result.forecasts[backtest.MODEL]
        cols = ["unique_id", "ds", "origin", "mean", *[c for c in champion if c.startswith("q")]]
        champion[cols].to_parquet(out / "forecasts.parquet", index=False)
        html = result.report(
            panel, cfg, title=f"supplyml bench: {Path(cfg.data.path).name}", lineage={**version, "mlflow_run_id": run.info.run_id}
        )
        (out / "report.html").write_text(html)
        for model, row in table.iterrows():
            mlflow.log_metrics({f"{model}.{k}": float(v) for k, v in row.items()})
        mlflow.log_metrics(result.inventory_metrics())
        mlflow.log_metrics({f"calibration.{k}": v for k, v in summary["calibration"].items()})
        mlflow.log_artifacts(str(out), artifact_path="bench")
    log.info("bench finished in %.0f s; results in %s", summary["seconds"], out)
    return {"summary": summary, "table": table, "inventory": result.inventory}


def _records(frame: pd.DataFrame, index: bool = True):
    frame = frame.astype({c: float for c in frame.select_dtypes("number")})
    return {str(k): v for k, v in frame.to_dict(orient="index").items()} if index else frame.to_dict(orient="records")


def render(cfg: Config, result: dict, out: str) -> str:
    """What `supplyml bench` prints."""
    summary = result["summary"]
    return "\n".join(
        [
            f"\nRolling-origin backtest: {summary['series']} series, origins {', '.join(summary['origins'])}, "
            f"{summary['horizon']}-day horizon (metrics averaged over origins, seconds summed):",
            backtest.format_table(result["table"]),
            "\nReplenishment simulation (all origins pooled):",
            backtest.format_table(result["inventory"]),
            "\nCalibration of the champion (interval coverage of daily values and of lead-time + review totals; "
            "realised cycle service level against its target):",
            "  ".join(f"{k} {v:.3f}" for k, v in summary["calibration"].items()),
            f"\nWrote {out}/results.json, forecasts.parquet, report.html; MLflow run {summary['mlflow_run_id']}",
        ]
    )
