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


def check_service_level(service_level: float) -> None:
    if not 0 < service_level < 1:
        raise ValueError(f"service_level must lie strictly between 0 and 1, got {service_level}")


def order_up_to(totals: np.ndarray, service_level: float, axis: int = -1) -> np.ndarray:
    """S: the service-level quantile of sampled TOTAL demand over the window it must cover.

    inverted_cdf picks an observed total, so integer demand gives the textbook integer S.
    """
    return np.quantile(totals, service_level, axis=axis, method="inverted_cdf")


def normal_safety_stock(sd_daily, days, service_level: float):
    """z * sigma * sqrt(days): the cover above the mean for `days` of i.i.d. normal daily demand."""
    return float(norm.ppf(service_level)) * sd_daily * np.sqrt(days)


def normal_order_up_to(mean_daily, sd_daily, days, service_level: float):
    """S = mu * days + z * sigma * sqrt(days), the textbook level; arrays broadcast."""
    return days * mean_daily + normal_safety_stock(sd_daily, days, service_level)


def _validate(lead_time: int, review_period: int, service_level: float, on_hand: float, on_order: float) -> None:
    if lead_time < 0:
        raise ValueError(f"lead_time must be >= 0 days, got {lead_time}")
    if review_period < 1:
        raise ValueError(f"review_period must be >= 1 day, got {review_period}")
    check_service_level(service_level)
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

    total = paths[:, : lead_time + review_period].sum(axis=1)
    level = float(order_up_to(total, service_level))
    # Below this position, the chance of a stockout before a new order can arrive exceeds 1 - service_level.
    reorder_point = float(order_up_to(paths[:, :lead_time].sum(axis=1), service_level))
    expected = float(total.mean())
    return BaseStockDecision(
        order_quantity=max(0.0, level - (on_hand + on_order)),
        order_up_to=level,
        reorder_point=reorder_point,
        safety_stock=level - expected,
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
    window = lead_time + review_period
    expected = mean_daily * window
    safety = normal_safety_stock(sd_daily, window, service_level)
    level = normal_order_up_to(mean_daily, sd_daily, window, service_level)
    return BaseStockDecision(
        order_quantity=max(0.0, level - (on_hand + on_order)),
        order_up_to=float(level),
        reorder_point=float(normal_order_up_to(mean_daily, sd_daily, lead_time, service_level)),
        safety_stock=float(safety),
        expected_demand=float(expected),
    )


def classical(
    recent: np.ndarray, lead_time: int, review_period: int, service_level: float, on_hand: float, on_order: float
) -> BaseStockDecision:
    """The textbook decision from the last days of demand `recent` (oldest first): S = (L+R) mu + z sigma
    sqrt(L+R), the reorder point L mu + z sigma sqrt(L), mu and sigma (ddof=0) of `recent`, as the
    simulation's classical policy reads them."""
    _validate(lead_time, review_period, service_level, on_hand, on_order)
    recent = np.asarray(recent, dtype=float)
    if recent.ndim != 1 or recent.size == 0 or not np.isfinite(recent).all():
        raise ValueError("recent demand must be a non-empty 1-D array of finite values")
    mu, sigma = float(recent.mean()), float(recent.std())
    days = lead_time + review_period
    level = float(normal_order_up_to(mu, sigma, days, service_level))
    return BaseStockDecision(
        order_quantity=max(0.0, level - (on_hand + on_order)),
        order_up_to=level,
        reorder_point=float(normal_order_up_to(mu, sigma, lead_time, service_level)),
        safety_stock=level - days * mu,
        expected_demand=days * mu,
    )
