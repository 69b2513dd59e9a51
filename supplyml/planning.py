"""Answers for planning systems, computed from a Forecaster: forecasts and replenishment decisions."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict


from supplyml.forecaster import Forecaster
from supplyml.inventory import base_stock
from supplyml.metrics import quantile_col


def forecast(forecaster: Forecaster, skus: list[str], horizon: int, quantiles: list[float],
             n_samples: int, seed: int = 0) -> list[dict]:
    """Per SKU: the dates, the mean and each requested quantile, day by day."""
    frame = forecaster.predict(skus, horizon, quantiles, n_samples, seed)
    dates = [d.date().isoformat() for d in frame["ds"].iloc[:horizon]]
    out = []
    for sku, rows in frame.groupby("unique_id", sort=False):
        out.append({"sku": sku, "dates": dates, "mean": rows["mean"].astype(float).round(4).tolist(),
                    "quantiles": {f"{q:g}": rows[quantile_col(q)].astype(float).round(4).tolist() for q in quantiles}})
    return out


def replenish(forecaster: Forecaster, items: Iterable, n_samples: int, seed: int = 0) -> list[dict]:
    """Per item: a periodic-review base-stock decision on joint sample paths of its demand.

    One batch of paths covers every item, long enough for the longest lead time + review period.
    """
    items = list(items)
    horizon = max(i.lead_time_days + i.review_period_days for i in items)
    paths = forecaster.sample([i.sku for i in items], horizon, n_samples, seed)
    decisions = []
    for item, item_paths in zip(items, paths):
        d = base_stock(item_paths, item.lead_time_days, item.review_period_days, item.service_level,
                       item.on_hand, item.on_order)
        decisions.append({"sku": item.sku, **{k: round(float(v), 4) for k, v in asdict(d).items()}})
    return decisions
