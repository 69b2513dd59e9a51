"""Scoring a fitted recommender on a window of interactions: the lists it ranks and their metrics."""

from __future__ import annotations

import pandas as pd

from supplyml.recommending import metrics
from supplyml.recommending.base import Recommender
from supplyml.recommending.interactions import purchased_items, relevant_items


def score_window(
    model: Recommender, history: pd.DataFrame, window: pd.DataFrame, k: int
) -> tuple[dict[str, float], dict[str, list[tuple[str, float]]]]:
    """Flat metrics of `model` on `window` (customers it knows), and the lists it was judged on."""
    relevant = relevant_items(window, known=set(model.customers))
    customers = sorted(relevant)
    lists = dict(zip(customers, model.recommend(customers, k)))
    rankings = {c: [s for s, _ in lst] for c, lst in lists.items()}
    return metrics.flatten(metrics.evaluate(rankings, relevant, purchased_items(history), len(model.items))), lists
