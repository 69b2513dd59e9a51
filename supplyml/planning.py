"""Answers for planning systems, computed from any Forecaster: forecasts and replenishment decisions.

Plain JSON-able lists, so the Bento service, the CLI and notebooks share one implementation.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict

from supplyml.forecasting import Forecaster
from supplyml.inventory import base_stock
from supplyml.metrics import quantile_col

DECIMALS = 4  # sample means carry no more precision than this


def forecast(forecaster: Forecaster, skus: list[str], horizon: int, quantiles: list[float]) -> list[dict]:
    """Per requested SKU, in request order: dates from the day after the history ends, the mean and each quantile."""
    unique = list(dict.fromkeys(skus))  # a repeated SKU gets the same answer, not a second draw
    quantiles = sorted(set(quantiles))
    frame = forecaster.predict(unique, horizon, quantiles)
    dates = [d.date().isoformat() for d in frame["ds"].iloc[:horizon]]
    answers = {}
    for i, sku in enumerate(unique):
        rows = frame.iloc[i * horizon:(i + 1) * horizon]  # predict returns one block of `horizon` rows per SKU
        answers[sku] = {"sku": sku, "dates": dates, "mean": _floats(rows["mean"]),
                        "quantiles": {f"{q:g}": _floats(rows[quantile_col(q)]) for q in quantiles}}
    return [answers[s] for s in skus]


def replenish(forecaster: Forecaster, items: Iterable[Mapping], n_samples: int, seed: int = 0) -> list[dict]:
    """Per item: a periodic-review base-stock decision on sample paths of its demand over L + R days.

    Items are mappings (or pydantic models) with sku, on_hand, on_order, lead_time_days,
    review_period_days and service_level. One draw of paths, as long as the longest L + R, serves every
    item; items for the same SKU share paths, so their decisions differ only by their own parameters.
    S is read at the model's calibrated order level for the item's service level.
    """
    items = [dict(i) for i in items]
    if not items:
        return []
    horizon = max(i["lead_time_days"] + i["review_period_days"] for i in items)
    skus = list(dict.fromkeys(i["sku"] for i in items))
    paths = dict(zip(skus, forecaster.sample(skus, horizon, n_samples, seed)))
    decisions = []
    for i in items:
        d = base_stock(paths[i["sku"]], i["lead_time_days"], i["review_period_days"],
                       forecaster.order_level(i["service_level"]), i["on_hand"], i.get("on_order", 0.0))
        decisions.append({"sku": i["sku"], **{k: round(float(v), DECIMALS) for k, v in asdict(d).items()}})
    return decisions


def _floats(values) -> list[float]:
    return values.astype(float).round(DECIMALS).tolist()
