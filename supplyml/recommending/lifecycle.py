"""The recommendation family through the lifecycle: fit what is served, judge it against the peers and the
champion on the same test window, and decide by the gate.

What is judged is the recipe (model name and hyperparameters), fitted on the days before the test window
and scored on it; the champion's recipe is refitted on the same days, so both see the same evidence. What
is served is the same recipe refitted on every day, so it knows the latest purchases.
"""
from __future__ import annotations

import json
import logging

import pandas as pd
from mlflow.models import MetricThreshold

from supplyml import gate, registry
from supplyml.config import Config
from supplyml.recommending.base import RECOMMENDERS, Recommender
from supplyml.recommending.interactions import Split, catalogue, temporal_split
from supplyml.recommending.peers import PEERS
from supplyml.recommending.scoring import score_window
from supplyml.recommending.search import served_params

log = logging.getLogger(__name__)
GATE_METRIC = "ndcg@10/all"
RECIPE_TAG = "recommender"  # a registered version's recipe: {"model": name, "params": {...}}


def recipe(cfg: Config, best: dict | None = None) -> dict:
    """The served model and its hyperparameters, with the tuned ones (`best`) on top."""
    return {"model": cfg.recommend.model, "params": {**served_params(cfg), **(best or {})}}


def fit(recipe: dict, frame: pd.DataFrame, descriptions: dict[str, str]) -> Recommender:
    model = RECOMMENDERS[recipe["model"]](**recipe["params"]).fit(frame, catalogue(frame))
    model.descriptions = {s: descriptions[s] for s in model.items if s in descriptions}
    return model


def split(cfg: Config, frame: pd.DataFrame) -> Split:
    return temporal_split(frame, cfg.recommend.test_days, cfg.recommend.val_days)


def peer_table(cfg: Config, data: Split, model: Recommender) -> pd.DataFrame:
    """Test-window metrics (one row per model: flat `metric/subset` columns) of `model` and of the
    peers in `recommend.report_peers`, each fitted on the same days before the test window."""
    rows = {"model": score_window(model, data.fit, data.test, cfg.recommend.k)[0]}
    for name in dict.fromkeys(["popularity", *cfg.recommend.report_peers]):  # the gate needs popularity
        peer = PEERS[name](popularity_days=cfg.recommend.popularity_days).fit(data.fit, catalogue(data.fit))
        rows[name] = score_window(peer, data.fit, data.test, cfg.recommend.k)[0]
    return pd.DataFrame(rows).T.rename_axis("model")


def rules(cfg: Config) -> list[gate.Rule]:
    return [
        gate.Rule("held-out NDCG@10 no worse than the popularity peer's", "ndcg_gap_to_popularity",
                  MetricThreshold(threshold=0.0, greater_is_better=True), False),
        gate.Rule(f"held-out NDCG@10 at most {cfg.recommend.max_ndcg_regression:.0%} worse than the champion's",
                  "ndcg_regression", MetricThreshold(threshold=cfg.recommend.max_ndcg_regression,
                                                     greater_is_better=False), True),
    ]


class Verdict(gate.Verdict):
    """The forecaster's verdict, showing every figure of the recommender's gate."""

    shown = None


def judge(cfg: Config, data: Split, table: pd.DataFrame, challenger: dict, descriptions: dict[str, str]) -> Verdict:
    """The gate on the test window: above popularity, and no real regression against the champion's recipe
    refitted on the same days (its figures are the challenger's when the recipes are the same)."""
    ours = {"ndcg@10": float(table.loc["model", GATE_METRIC]),
            "ndcg_gap_to_popularity": float(table.loc["model", GATE_METRIC] - table.loc["popularity", GATE_METRIC])}
    current = registry.champion_version(cfg.registry.recommender_name)
    champion = None
    if current is not None:
        theirs = json.loads(current.tags[RECIPE_TAG])
        if theirs == challenger:
            score = ours["ndcg@10"]
        else:
            score = score_window(fit(theirs, data.fit, descriptions), data.fit, data.test, cfg.recommend.k)[0][GATE_METRIC]
        champion = {"ndcg@10": float(score)}
        ours["ndcg_regression"] = 1 - ours["ndcg@10"] / score if score > 0 else 0.0
    promote, reasons = gate.check(rules(cfg), ours, champion)
    return Verdict(promote, reasons, ours, champion, str(current.version) if current else None)
