"""The recommendation family through the lifecycle: fit what is served, judge it against the peers and the
champion on the same test window, and decide by the gate.

What is judged is the recipe (model name and hyperparameters), fitted on the days before each held-out
window (`features.test_origins` of `recommend.test_days`) and scored on it; the champion's recipe is
refitted on the same days, so both see the same evidence. What
is served is the same recipe refitted on every day, so it knows the latest purchases. The claim is
paired per customer (`supplyml.evidence`): NDCG@10 significantly better, new-item NDCG@10 not
significantly worse; a tie keeps the champion.
"""

from __future__ import annotations

import json
import logging

import pandas as pd
from mlflow.models import MetricThreshold

from supplyml import gate, registry
from supplyml.config import Config
from supplyml.recommending.base import Recommender, recommender
from supplyml.recommending.interactions import Split, catalogue, purchased_items, relevant_items
from supplyml.recommending.metrics import ndcg_per_customer, split_relevant
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
    model = recommender(recipe["model"])(**recipe["params"]).fit(frame, catalogue(frame))
    model.descriptions = {s: descriptions[s] for s in model.items if s in descriptions}
    return model


def peer_table(cfg: Config, data: Split, model: Recommender) -> pd.DataFrame:
    """Test-window metrics (one row per model: flat `metric/subset` columns) of `model` and of the
    peers in `recommend.report_peers`, each fitted on the same days before the test window."""
    rows = {"model": score_window(model, data.fit, data.test, cfg.recommend.k)[0]}
    for name in dict.fromkeys(["popularity", *cfg.recommend.report_peers]):  # the gate needs popularity
        peer = PEERS[name](popularity_days=cfg.recommend.popularity_days).fit(data.fit, catalogue(data.fit))
        rows[name] = score_window(peer, data.fit, data.test, cfg.recommend.k)[0]
    return pd.DataFrame(rows).T.rename_axis("model")


def rules() -> list[gate.Rule]:
    return [
        gate.Rule(
            "held-out NDCG@10 no worse than the popularity peer's",
            "ndcg_gap_to_popularity",
            MetricThreshold(threshold=0.0, greater_is_better=True),
            False,
        )
    ]


# The recommender's claim: better lists for everyone (NDCG@10, per customer), and not worse on new items.
CLAIM = (
    gate.Metric("ndcg@10", "ndcg@10/all", greater_is_better=True, pooled="mean"),
    gate.Metric("ndcg@10/new", "ndcg@10/new", greater_is_better=True, pooled="mean"),
)


def customer_units(model: Recommender, data: Split, k: int) -> pd.DataFrame:
    """Per test-window customer the model knows: NDCG@10 over all their items and over their new items
    (NaN without any), the paired units of the gate."""
    relevant = relevant_items(data.test, known=set(model.customers))
    customers = sorted(relevant)
    rankings = {c: [s for s, _ in lst] for c, lst in zip(customers, model.recommend(customers, k))}
    subsets = split_relevant(relevant, purchased_items(data.fit))
    return (
        pd.DataFrame(
            {
                "ndcg@10/all": ndcg_per_customer(rankings, subsets["all"]),
                "ndcg@10/new": ndcg_per_customer(rankings, subsets["new"]),
            }
        )
        .rename_axis("customer_id")
        .reset_index()
        .assign(origin=str(data.test_start.date()))
    )


class Verdict(gate.Verdict):
    """The forecaster's verdict, showing every figure of the recommender's gate."""

    shown = None


def judge(
    cfg: Config, held_out: list[Split], table: pd.DataFrame, challenger: dict, descriptions: dict[str, str], model: Recommender
) -> Verdict:
    """The gate on the held-out windows (`windows`; `model` is the challenger fitted before the last):
    above popularity on the last, and significantly better than the champion's recipe refitted on the
    same days at every window, paired per customer x window, without significantly worse new-item lists."""
    ours = {
        "ndcg@10": float(table.loc["model", GATE_METRIC]),
        "ndcg_gap_to_popularity": float(table.loc["model", GATE_METRIC] - table.loc["popularity", GATE_METRIC]),
    }
    promote, reasons = gate.check(rules(), ours, None)
    k, keys = cfg.recommend.k, ("customer_id", "origin")
    # The challenger's recipe at each window, fitted on the days before it (the last one is `model`).
    mine = [model if w is held_out[-1] else fit(challenger, w.fit, descriptions) for w in held_out]
    units = pd.concat([customer_units(m, w, k) for m, w in zip(mine, held_out)], ignore_index=True)
    popular = [PEERS["popularity"](popularity_days=cfg.recommend.popularity_days).fit(w.fit, catalogue(w.fit)) for w in held_out]
    popularity = pd.concat([customer_units(p, w, k) for p, w in zip(popular, held_out)], ignore_index=True)
    (peer,) = gate.paired(units, popularity, CLAIM[:1], cfg.gate, cfg.seed, keys=keys)
    reasons.append(f"evidence: {peer.describe('popularity')}")
    current = registry.champion_version(cfg.registry.recommender_name)
    champion, comparisons = None, []
    if current is not None:
        theirs = json.loads(current.tags[RECIPE_TAG])
        # The same recipe refitted on the same days is the same lists: no difference, by construction.
        rivals = mine if theirs == challenger else [fit(theirs, w.fit, descriptions) for w in held_out]
        rival = pd.concat([customer_units(m, w, k) for m, w in zip(rivals, held_out)], ignore_index=True)
        comparisons = gate.paired(units, rival, CLAIM, cfg.gate, cfg.seed, keys=keys)
        champion = {"ndcg@10": comparisons[0].champion}
        ours["ndcg@10 over the windows"] = comparisons[0].challenger
        claim, why = gate.significance(comparisons, cfg.gate.alpha)
        promote, reasons = promote and claim, reasons + why
    return Verdict(
        promote, reasons, ours, champion, str(current.version) if current else None, [c.to_dict() for c in [*comparisons, peer]]
    )
