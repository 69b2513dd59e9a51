"""The forecasting family's pipeline steps: choose and fit what to serve, judge it at the held-out
origins against peers and the champion, register it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pandas as pd

from supplyml import compute, families, gate, tracking
from supplyml.columns import FLAGS
from supplyml.config import Config
from supplyml.features import Split, history_days, plan
from supplyml.forecasting import backtest, lifecycle, load
from supplyml.forecasting.peers import DEFAULT_PEERS
from supplyml.forecasting.selection import candidates
from supplyml.forecasting.train import train_final
from supplyml.steps import lineage_tags, register_version

log = logging.getLogger(__name__)
POLICY_TAG = "policy"  # a forecaster version's served textbook policy: base_stock or classical


@compute.distributed
def train(cfg: Config, panel_in: str, best: dict, lineage: dict, model_out: str) -> str:
    """Choose, calibrate and fit what to serve on train + validation days; returns the MLflow run id that
    holds it. The selection evidence travels with the model (selection.json) to the gate."""
    tracking.setup_tracking(cfg)
    panel = pd.read_parquet(panel_in)
    cfg = plan(cfg, history_days(panel["ds"]))
    fit = Split.from_panel(panel, cfg.features).fit(panel)
    # The known-future flags the model learnt from: the server refuses the others instead of feeding a
    # network an input it never saw.
    flags = ",".join(f for f in FLAGS if fit[f].any())
    tags = lineage_tags({**lineage, "optuna_study": best["study"], "optuna_trial": best["trial"], "trained_flags": flags})
    with mlflow.start_run(run_name="train", tags=tags) as run:
        mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
        mlflow.log_params({f"data.{k}": v for k, v in lineage.items()})
        forecaster, evidence = train_final(fit, cfg, best["params"])
        forecaster.save(model_out)
        (Path(model_out) / "selection.json").write_text(json.dumps(evidence, default=float))
    return run.info.run_id


@compute.distributed
def evaluate(cfg: Config, panel_in: str, model_in: str, run_id: str, report_out: str) -> dict:
    """Score the model at the held-out origins against peers, replay the replenishment policies, choose the
    served textbook policy, judge the model against the champion on the same origins (the gate), and write
    the HTML report; everything also goes to the training run. Returns the metric table and the verdicts."""
    from supplyml.replenishing import lifecycle as policy_lifecycle

    tracking.setup_tracking(cfg)
    panel = pd.read_parquet(panel_in)
    cfg = plan(cfg, history_days(panel["ds"]))
    starts = Split.from_panel(panel, cfg.features).origins()
    forecaster = load(model_in)  # fitted on the days before the first origin, re-anchored at each
    peers = candidates(cfg, panel["unique_id"].nunique(), list(DEFAULT_PEERS))
    result = backtest.Backtest.from_origins(
        [backtest.evaluate_origin(panel, s, forecaster.with_history(panel[panel["ds"] < s]), cfg, peers) for s in starts]
    )
    table = result.table()
    log.info(
        "evaluation at %d origins from %s\n%s\n%s",
        len(starts),
        starts[0].date(),
        backtest.format_table(table),
        backtest.format_table(result.inventory),
    )
    decision = policy_lifecycle.textbook(cfg, result.units)
    log.info("served policy: %s\n%s", decision["served"], "\n".join(f"  - {r}" for r in decision["reasons"]))
    verdict = lifecycle.judge(cfg, panel, starts, forecaster, ours=result)
    log.info("%s\n%s", verdict.summary(), backtest.format_table(verdict.table()))
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"test_{k}": v for k, v in table.loc[backtest.MODEL].items()})
        mlflow.log_metrics(result.inventory_metrics())
        mlflow.log_metrics(
            {
                f"gate.{who}.{k}": v
                for who, figs in (("challenger", verdict.challenger), ("champion", verdict.champion or {}))
                for k, v in figs.items()
            }
        )
        mlflow.set_tags(
            {
                "gate.promote": str(verdict.promote),
                "gate.champion_version": str(verdict.champion_version),
                "policy.served": decision["served"],
            }
        )
        mlflow.log_dict(verdict.to_dict(), "evaluation/verdict.json")
        mlflow.log_dict(decision, "evaluation/policy.json")
        mlflow.log_table(table.reset_index(), "evaluation/metrics.json")
        mlflow.log_table(result.inventory.reset_index(), "evaluation/inventory.json")
        lifecycle.log_evidence(panel)  # what `supplyml model promote` judges this version on later
        report = result.report(
            panel,
            cfg,
            f"supplyml evaluation at {len(starts)} held-out origins",
            lineage=mlflow.get_run(run_id).data.tags,
            gate=(verdict.table(), [*verdict.reasons, *decision["reasons"]]),
        )
        mlflow.log_text(report, "evaluation/report.html")
    Path(report_out).write_text(report)
    return {
        "metrics": {name: row.to_dict() for name, row in table.iterrows()},
        "verdict": verdict.to_dict(),
        "policy": decision,
        "holdout_start": str(starts[0].date()),
        "holdout_origins": ",".join(str(s.date()) for s in starts),
    }


def register(cfg: Config, panel_in: str, model_in: str, run_id: str, evaluation: dict, lineage: dict) -> dict:
    """Log the forecaster (its history through the data's last day) as an MLflow model, register a
    version with lineage and its verdict, and move `champion` to it if the gate said so and the
    champion is still the one it was judged against."""
    tracking.setup_tracking(cfg)
    panel = pd.read_parquet(panel_in)
    cfg = plan(cfg, history_days(panel["ds"]))  # the pyfunc's default horizon is the one trained
    forecaster = load(model_in).with_history(panel)  # serve forecasts from the day after the data ends
    name = cfg.registry.model_name
    verdict = evaluation["verdict"]
    with mlflow.start_run(run_id=run_id):
        model_uri = tracking.log_forecaster(forecaster, cfg)
    tags = {k: v for k, v in mlflow.get_run(run_id).data.tags.items() if not k.startswith(("mlflow.", "gate."))}
    return register_version(
        cfg,
        name,
        model_uri,
        verdict,
        {
            **tags,
            "metrics": json.dumps(evaluation["metrics"][backtest.MODEL]),
            "holdout_start": evaluation["holdout_start"],
            "holdout_origins": evaluation["holdout_origins"],
            POLICY_TAG: evaluation["policy"]["served"],
        },
    )


def summary(cfg: Config, outputs: dict) -> str:
    """What `supplyml pipeline run` prints of this family: the held-out figures, the served textbook
    policy, the gate's verdict and the registration."""
    evaluation, registration = json.loads(outputs["evaluation"]), json.loads(outputs[families.get("forecast").output])
    decision = evaluation["policy"]
    return "\n".join(
        [
            f"\nEvaluation at the held-out origins {evaluation['holdout_origins']} (averaged; lower is better, "
            "coverage should match its level):",
            backtest.format_table(pd.DataFrame.from_dict(evaluation["metrics"], orient="index")),
            f"\nServed textbook policy: {decision['served']} (by total cost at the service target)",
            *(f"  - {reason}" for reason in decision["reasons"]),
            gate.describe(registration["verdict"]),
            "",
            *gate.registered(registration, skip=len(registration["verdict"]["reasons"])),
        ]
    )
