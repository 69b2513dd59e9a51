"""The recommendation family's pipeline steps: purchases from the gated order lines, then train, judge
on the held-out windows, register."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pandas as pd

from supplyml import families, gate, tracking
from supplyml.config import Config
from supplyml.recommending import lifecycle as recommend_lifecycle
from supplyml.recommending.interactions import interactions as purchases
from supplyml.recommending.interactions import item_table, purchase_lines, split, windows
from supplyml.steps import lineage_tags, register_version

log = logging.getLogger(__name__)


def interactions(cfg: Config, raw_in: str, frame_out: str, items_out: str) -> dict:
    """Implicit feedback from the gated order lines (customer x SKU x day purchases) and the item table
    (description, median price) the answers show."""
    lines = purchase_lines(pd.read_parquet(raw_in), cfg.data)
    frame = purchases(lines)
    data = windows(cfg, frame)[-1]  # fails here, naming the dates, if the history is too short
    frame.to_parquet(frame_out)
    item_table(lines).to_parquet(items_out)
    return {
        "interactions": len(frame),
        "customers": int(frame["customer_id"].nunique()),
        "skus": int(frame["sku"].nunique()),
        **data.dates(),
    }


def _descriptions(items_in: str) -> dict[str, str]:
    items = pd.read_parquet(items_in).dropna(subset=["description"])
    return dict(zip(items["sku"], items["description"]))


def train(cfg: Config, frame_in: str, items_in: str, best: dict, lineage: dict, model_out: str) -> str:
    """The tuned recipe fitted on the days before the test window (what the gate judges); returns its run id."""
    tracking.setup_tracking(cfg)
    data = split(cfg, pd.read_parquet(frame_in))
    recipe = recommend_lifecycle.recipe(cfg, best["params"])
    tags = lineage_tags({**lineage, "optuna_study": best["study"], "optuna_trial": best["trial"], "family": "recommend"})
    with mlflow.start_run(run_name="train-recommender", tags=tags) as run:
        mlflow.log_params({f"recommender.{k}": v for k, v in recipe["params"].items()})
        mlflow.log_param("recommender", recipe["model"])
        mlflow.log_params({f"data.{k}": v for k, v in lineage.items()})
        model = recommend_lifecycle.fit(recipe, data.fit, _descriptions(items_in))
        model.save(model_out)
        Path(model_out, "recipe.json").write_text(json.dumps(recipe))
    return run.info.run_id


def evaluate(
    cfg: Config, frame_in: str, items_in: str, raw_in: str, panel_in: str, model_in: str, run_id: str, report_out: str
) -> dict:
    """Test-window metrics of the model and its peers (all, repeat and new items), the gate's verdict
    against the champion, customer RFM and product demand segments, and the HTML report; everything also
    goes to the run."""
    from supplyml import segments
    from supplyml.recommending import load as load_recommender
    from supplyml.recommending.report import render

    tracking.setup_tracking(cfg)
    held_out = windows(cfg, pd.read_parquet(frame_in))
    data = held_out[-1]
    model = load_recommender(model_in)
    recipe = json.loads(Path(model_in, "recipe.json").read_text())
    table = recommend_lifecycle.peer_table(cfg, data, model)
    verdict = recommend_lifecycle.judge(cfg, held_out, table, recipe, _descriptions(items_in), model)
    log.info(
        "recommendations on %s .. %s\n%s\n%s",
        data.test_start.date(),
        data.end.date(),
        table.filter(like="ndcg@10").to_string(float_format="%.4f"),
        "\n".join(verdict.reasons),
    )
    customers = segments.customer_segments(pd.read_parquet(raw_in), cfg, as_of=data.test_start)
    panel = pd.read_parquet(panel_in)
    products = segments.product_segments(panel[panel["ds"] < data.test_start], cfg)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"test_{k.replace('@', '_at_').replace('/', '.')}": float(v) for k, v in table.loc["model"].items()})
        mlflow.set_tags({"gate.promote": str(verdict.promote), "gate.champion_version": str(verdict.champion_version)})
        mlflow.log_dict(verdict.to_dict(), "evaluation/verdict.json")
        mlflow.log_table(table.reset_index(), "evaluation/metrics.json")
        report = render(table, verdict, customers, products, data.dates(), mlflow.get_run(run_id).data.tags)
        mlflow.log_text(report, "evaluation/report.html")
    Path(report_out).write_text(report)
    return {
        "metrics": {name: row.to_dict() for name, row in table.iterrows()},
        "verdict": verdict.to_dict(),
        "recipe": recipe,
        "test_start": str(data.test_start.date()),
    }


def register(cfg: Config, frame_in: str, items_in: str, run_id: str, evaluation: dict) -> dict:
    """The judged recipe refitted on every day (so it knows the latest purchases), logged as an MLflow
    model and registered with its lineage and verdict; `champion` moves to it if the gate said so."""
    tracking.setup_tracking(cfg)
    recipe, verdict = evaluation["recipe"], evaluation["verdict"]
    model = recommend_lifecycle.fit(recipe, pd.read_parquet(frame_in), _descriptions(items_in))
    with mlflow.start_run(run_id=run_id):
        model_uri = tracking.log_recommender(model, cfg)
    tags = {k: v for k, v in mlflow.get_run(run_id).data.tags.items() if not k.startswith(("mlflow.", "gate."))}
    return register_version(
        cfg,
        cfg.registry.recommender_name,
        model_uri,
        verdict,
        {
            **tags,
            recommend_lifecycle.RECIPE_TAG: json.dumps(recipe),
            # A subset without customers (no new items in the window) has NaN figures: left out, JSON has no NaN.
            "metrics": json.dumps({k: v for k, v in evaluation["metrics"]["model"].items() if v == v}),
            "test_start": evaluation["test_start"],
        },
    )


def summary(cfg: Config, outputs: dict) -> str:
    """What `supplyml pipeline run` prints of this family: the test window's NDCG@10 against popularity
    and the champion, and the registration."""
    recommendation = json.loads(outputs[families.get("recommend").output])
    verdict = recommendation["verdict"]
    ours = verdict["challenger"]
    against = (
        f", champion version {verdict['champion_version']} {verdict['champion']['ndcg@10']:.4f}"
        if verdict["champion"]
        else ", no champion yet"
    )
    return "\n".join(
        [
            f"\nRecommendations on the test window: NDCG@10 {ours['ndcg@10']:.4f} (popularity peer "
            f"{ours['ndcg@10'] - ours['ndcg_gap_to_popularity']:.4f}{against}; same days, paired per customer)",
            *gate.registered(recommendation),
        ]
    )
