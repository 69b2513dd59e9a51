"""Answers for planning systems, computed from any Forecaster: forecasts and replenishment decisions.

Plain JSON-able lists, so the Bento service, the CLI and notebooks share one implementation. The `_many`
forms answer several requests with as few model calls as their horizons and promotion flags allow (what a
batching server sends); the single-request forms are a batch of one.

Known future flags are per SKU: `promo` and `event` map a SKU to 0/1 per day from the first forecast day
(days not given are 0, as when no flags are sent at all; days past the horizon and SKUs not asked about
are not used).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict

import numpy as np
import pandas as pd

from supplyml.columns import FLAGS
from supplyml.forecasting import Forecaster
from supplyml.forecasting.metrics import quantile_col
from supplyml.inventory import base_stock, classical

DECIMALS = 4  # sample means carry no more precision than this
BASE_STOCK, CLASSICAL, LEARNED = "base_stock", "classical", "learned"  # who decides a replenishment order
QUANTILES = [0.05, 0.5, 0.95]  # levels answered when a caller names none


def forecast(
    forecaster: Forecaster,
    skus: list[str],
    horizon: int,
    quantiles: list[float],
    promo: Mapping[str, list[int]] | None = None,
    event: Mapping[str, list[int]] | None = None,
) -> list[dict]:
    """Per requested SKU, in request order: dates from the day after the history ends, the mean and each quantile."""
    request = {"skus": skus, "horizon": horizon, "quantiles": quantiles, "promo": promo or {}, "event": event or {}}
    return forecast_many(forecaster, [request])[0]


def forecast_many(forecaster: Forecaster, requests: list[Mapping]) -> list[list[dict]]:
    """`forecast` of each request (a mapping with skus, horizon, quantiles, promo, event).

    Requests of one horizon share a model call at the union of their levels (a level's quantile does not
    depend on the others), unless they give one SKU different flags; a repeated SKU gets one answer.
    """
    answers: list[list[dict]] = [[] for _ in requests]
    for group in _share(requests, lambda r: r["horizon"], lambda r: {s: _flags(r, s) for s in r["skus"]}):
        horizon = requests[group[0]]["horizon"]
        skus = list(dict.fromkeys(s for i in group for s in requests[i]["skus"]))
        levels = sorted({q for i in group for q in requests[i]["quantiles"]})
        future = _future(forecaster, {s: _flags(requests[i], s) for i in group for s in requests[i]["skus"]}, horizon)
        frame = forecaster.predict(skus, horizon, levels, future)
        dates = [d.date().isoformat() for d in frame["ds"].iloc[:horizon]]
        # predict returns one block of `horizon` rows per SKU: each column as (SKU, day) lists, built once
        table = {
            c: frame[c].to_numpy(float).round(DECIMALS).reshape(len(skus), horizon).tolist()
            for c in ["mean", *map(quantile_col, levels)]
        }
        row = {sku: k for k, sku in enumerate(skus)}
        for i in group:
            wanted = sorted(set(requests[i]["quantiles"]))
            answers[i] = [
                {
                    "sku": s,
                    "dates": dates,
                    "mean": table["mean"][row[s]],
                    "quantiles": {f"{q:g}": table[quantile_col(q)][row[s]] for q in wanted},
                }
                for s in requests[i]["skus"]
            ]
    return answers


def replenish(
    forecaster: Forecaster,
    items: Iterable[Mapping],
    n_samples: int,
    seed: int = 0,
    policy=None,
    default: str = BASE_STOCK,
    ma_window: int = 28,
) -> list[dict]:
    """Per item: a periodic-review base-stock decision on sample paths of its demand over L + R days.

    Items are mappings (or pydantic models) with sku, on_hand, on_order, lead_time_days,
    review_period_days, service_level and optional promo and event flags. One draw of paths, as long as
    the longest L + R, serves every item; items for the same SKU and flags share paths, so their decisions
    differ only by their own parameters. S is read at the model's calibrated order level for the item's
    service level.

    `policy`, a learned policy (`tracking.PolicyModel`: `.policy`, `.setting`), decides the order instead
    where an item asks for it (`"policy": "learned"`), or by default for the lead time and review period
    it was trained for. Only order_quantity is then the policy's: order_up_to (base stock's S), the reorder
    point, safety stock and expected demand describe the same paths either way.

    `default` decides the other items: base stock, or the classical policy (moving average of the SKU's
    last `ma_window` days + normal safety stock), whichever won on the model's held-out origins.
    """
    return replenish_many(forecaster, [items], n_samples, seed, policy, default, ma_window)[0]


def replenish_many(
    forecaster: Forecaster,
    requests: list[Iterable[Mapping]],
    n_samples: int,
    seed: int = 0,
    policy=None,
    default: str = BASE_STOCK,
    ma_window: int = 28,
) -> list[list[dict]]:
    """`replenish` of each request (a list of items), all items' paths drawn together."""
    copies = [[dict(i) for i in items] for items in requests]
    items = [i for r in copies for i in r]
    if not items:
        return [[] for _ in copies]
    horizon = max(i["lead_time_days"] + i["review_period_days"] for i in items)
    keys = list(dict.fromkeys(map(_path_key, items)))
    paths: dict[tuple, np.ndarray] = {}
    # A SKU with two sets of flags needs two draws: a future frame holds one set per SKU.
    for group in _share(keys, lambda k: 0, lambda k: {k[0]: k[1:]}):
        skus = [keys[j][0] for j in group]
        future = _future(forecaster, {keys[j][0]: keys[j][1:] for j in group}, horizon)
        paths.update(zip((keys[j] for j in group), forecaster.sample(skus, horizon, n_samples, seed, future)))
    recent = _recent(forecaster, ma_window)
    return [[_decide(forecaster, paths[_path_key(i)], i, policy, default, recent) for i in r] for r in copies]


def _recent(forecaster: Forecaster, days: int):
    """SKU -> its last `days` days of demand (what the classical policy reads), looked up when asked."""
    history = forecaster.history
    recent = history[history["ds"] > forecaster.last_date - pd.Timedelta(days=days)]
    groups = recent.groupby("unique_id", sort=False)["y"]
    return lambda sku: groups.get_group(sku).to_numpy()


def _decide(forecaster: Forecaster, paths, item: dict, policy, default: str, recent) -> dict:
    L, R = item["lead_time_days"], item["review_period_days"]
    on_hand, on_order = item["on_hand"], item.get("on_order", 0.0)
    trained = policy is not None and (L, R) == (policy.setting["lead_time"], policy.setting["review_period"])
    who = item.get("policy") or (LEARNED if trained else default)
    if who == CLASSICAL:
        d = asdict(classical(recent(item["sku"]), L, R, item["service_level"], on_hand, on_order))
        return {"sku": item["sku"], "policy": who, **{k: round(float(v), DECIMALS) for k, v in d.items()}}
    d = asdict(base_stock(paths, L, R, forecaster.order_level(item["service_level"]), on_hand, on_order))
    if who == LEARNED:
        if not trained:
            raise ValueError(f"no learned policy for lead time {L} and review period {R}")
        d["order_quantity"] = float(_learned_order(policy.policy, paths[:, : L + R], L, R, on_hand, on_order))
    return {"sku": item["sku"], "policy": who, **{k: round(float(v), DECIMALS) for k, v in d.items()}}


def _learned_order(model, paths: np.ndarray, lead_time: int, review_period: int, on_hand: float, on_order: float) -> float:
    from supplyml.replenishing.real import orders

    # At a review nothing the policy saw in training was on order before tomorrow: what is, counts as due then.
    pipeline = np.zeros((1, max(lead_time - 1, 0)))
    if pipeline.shape[1]:
        pipeline[0, 0] = on_order
    else:
        on_hand += on_order
    return orders(model, np.array([on_hand]), pipeline, paths[None], lead_time, review_period)[0]


def _path_key(item: dict) -> tuple:
    return (item["sku"], *(_days(item.get(f), item["lead_time_days"] + item["review_period_days"]) for f in FLAGS))


def _days(flags, horizon: int) -> tuple[int, ...]:
    """Flags within the horizon as a key: trailing zeros dropped, since days not given are 0; days past
    the horizon change nothing that is answered."""
    days = [int(f) for f in list(flags or ())[:horizon]]
    while days and days[-1] == 0:
        days.pop()
    return tuple(days)


def _flags(request: Mapping, sku: str) -> tuple[tuple[int, ...], ...]:
    return tuple(_days((request.get(f) or {}).get(sku), request["horizon"]) for f in FLAGS)


def _share(items: list, key, claims) -> list[list[int]]:
    """Indices of `items` in groups that can share one model call: the same key, and no SKU claimed with
    two different values (`claims(item)` maps SKU to value). Greedy, in order."""
    groups: list[tuple[object, dict, list[int]]] = []
    for i, item in enumerate(items):
        k, wants = key(item), claims(item)
        for gk, held, members in groups:
            if gk == k and all(held.get(s, v) == v for s, v in wants.items()):
                held.update(wants)
                members.append(i)
                break
        else:
            groups.append((k, dict(wants), [i]))
    return [members for _, _, members in groups]


def _future(forecaster: Forecaster, flags: Mapping[str, tuple], horizon: int) -> pd.DataFrame | None:
    """The `future` frame (unique_id, ds, promo, event) of SKUs with any flag set; None when none is."""
    flagged = {s: f for s, f in flags.items() if any(f)}
    if not flagged:
        return None
    dates = forecaster.forecast_dates(horizon)
    rows = [
        {"unique_id": s, "ds": d, **{name: float(days[t]) if t < len(days) else 0.0 for name, days in zip(FLAGS, f)}}
        for s, f in flagged.items()
        for t, d in enumerate(dates)
    ]
    return pd.DataFrame(rows)
