"""Periodic-review base-stock (order-up-to) policy from demand sample paths.

Every R days we look at the inventory position (on hand + on order) and order up to S. An order
placed now arrives after L days and the next chance to order comes R days later, so S must cover
demand over L + R days. The policy therefore works on the distribution of TOTAL demand over that
window, taken from whole sample paths. Summing per-day quantiles instead would assume every day
is simultaneously at its own high quantile and grossly overstate S.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True)
class BaseStockDecision:
    order_quantity: float  # units to order now
    order_up_to: float  # S: target inventory position after ordering
    reorder_point: float  # service-level quantile of lead-time demand
    safety_stock: float  # S minus expected demand over L + R
    expected_demand: float  # mean demand over L + R


def _validate(
    lead_time: int, review_period: int, service_level: float, on_hand: float, on_order: float
) -> None:
    if lead_time < 0:
        raise ValueError(f"lead_time must be >= 0 days, got {lead_time}")
    if review_period < 1:
        raise ValueError(f"review_period must be >= 1 day, got {review_period}")
    if not 0 < service_level < 1:
        raise ValueError(f"service_level must lie strictly between 0 and 1, got {service_level}")
    if on_hand < 0:
        raise ValueError(f"on_hand must be >= 0 units, got {on_hand}")
    if on_order < 0:
        raise ValueError(f"on_order must be >= 0 units, got {on_order}")


def base_stock(
    demand_paths: np.ndarray,
    lead_time: int,
    review_period: int,
    service_level: float,
    on_hand: float,
    on_order: float,
) -> BaseStockDecision:
    """Order-up-to decision from daily demand sample paths of shape (n_samples, horizon)."""
    _validate(lead_time, review_period, service_level, on_hand, on_order)
    paths = np.asarray(demand_paths, dtype=float)
    if paths.ndim != 2 or paths.shape[0] == 0:
        raise ValueError(f"demand_paths must have shape (n_samples, horizon), got {paths.shape}")
    if paths.shape[1] < lead_time + review_period:
        raise ValueError(
            f"demand_paths horizon {paths.shape[1]} is shorter than lead_time + review_period "
            f"= {lead_time + review_period}; forecast further ahead"
        )
    if not np.isfinite(paths).all():
        raise ValueError("demand_paths contains NaN or inf")

    # inverted_cdf picks an observed value, so integer demand gives the textbook integer S.
    total = paths[:, : lead_time + review_period].sum(axis=1)
    order_up_to = float(np.quantile(total, service_level, method="inverted_cdf"))
    # Below this position, the chance of a stockout before a new order can arrive exceeds 1 - service_level.
    lead_demand = paths[:, :lead_time].sum(axis=1)
    reorder_point = float(np.quantile(lead_demand, service_level, method="inverted_cdf"))
    expected = float(total.mean())
    return BaseStockDecision(
        order_quantity=max(0.0, order_up_to - (on_hand + on_order)),
        order_up_to=order_up_to,
        reorder_point=reorder_point,
        safety_stock=order_up_to - expected,
        expected_demand=expected,
    )


def normal_base_stock(
    mean_daily: float,
    sd_daily: float,
    lead_time: int,
    review_period: int,
    service_level: float,
    on_hand: float = 0.0,
    on_order: float = 0.0,
) -> BaseStockDecision:
    """Textbook policy for i.i.d. normal daily demand: S = mu(L+R) + z * sigma * sqrt(L+R)."""
    _validate(lead_time, review_period, service_level, on_hand, on_order)
    if sd_daily < 0:
        raise ValueError(f"sd_daily must be >= 0, got {sd_daily}")
    z = float(norm.ppf(service_level))
    window = lead_time + review_period
    expected = mean_daily * window
    safety = z * sd_daily * np.sqrt(window)
    order_up_to = expected + safety
    return BaseStockDecision(
        order_quantity=max(0.0, order_up_to - (on_hand + on_order)),
        order_up_to=float(order_up_to),
        reorder_point=float(mean_daily * lead_time + z * sd_daily * np.sqrt(lead_time)),
        safety_stock=float(safety),
        expected_demand=float(expected),
    )
