"""Day-by-day, periodic-review, lost-sales inventory simulation, vectorised over series.

The backtest replays each replenishment policy, given as order-up-to levels S per series and day,
against the demand that actually happened, and compares what it costs: units held, sales lost,
cycles with a stockout. Forecast accuracy alone does not say which policy is cheaper to run.

Within each day d, in this order:
  1. orders placed on day d - lead_time arrive (with lead_time 0, today's order arrives before demand);
  2. on review days (d % review_period == 0) the inventory position, on hand plus on order, is raised to S;
  3. demand is served from on hand; what cannot be served is lost, not backordered;
  4. holding cost is charged on the end-of-day on hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from supplyml.inventory import check_service_level, normal_order_up_to, order_up_to

# Lost units below this count as none: summing fractional demand leaves float residue, not a stockout.
STOCKOUT_TOLERANCE = 1e-9


def review_days(T: int, review_period: int) -> np.ndarray:
    """Indices of the review days among T simulated days: 0, R, 2R, ..."""
    _check_days("review_period", review_period, minimum=1)
    _check_days("T", T, minimum=0)
    return np.arange(0, T, review_period)


def expand_levels(values: np.ndarray, T: int, review_period: int) -> np.ndarray:
    """(n, n_reviews) per-review levels -> (n, T), each held from its review day until the next."""
    values = np.asarray(values, dtype=float)
    n_reviews = len(review_days(T, review_period))
    if values.ndim != 2 or values.shape[1] != n_reviews:
        raise ValueError(
            f"values must have shape (n_series, {n_reviews}): one level per review day of {T} days "
            f"every {review_period}; got {values.shape}"
        )
    return np.repeat(values, review_period, axis=1)[:, :T]


@dataclass(frozen=True, eq=False)
class Simulation:
    """Daily (n, T) trajectories of one simulated policy, and the economics to cost them."""

    on_hand: np.ndarray  # end of day, after demand
    sales: np.ndarray
    lost: np.ndarray
    orders: np.ndarray  # placed that day
    demand: np.ndarray
    price: np.ndarray  # (n,)
    holding_cost: float  # per unit per day, as a fraction of price
    lost_sales_cost: float  # per unit lost, as a fraction of price
    review_period: int

    def cycle_stockouts(self) -> np.ndarray:
        """(n, n_cycles) bool: did the series lose any demand in that review cycle.

        A cycle runs from a review day to the day before the next; the last one may be partial.
        Any R consecutive days hold exactly one day on which some review's L + R window of cover
        ends, so this rate compares with the service-level target whatever L and R are.
        """
        starts = review_days(self.demand.shape[1], self.review_period)
        return np.add.reduceat(self.lost, starts, axis=1) > STOCKOUT_TOLERANCE

    def _costs(self) -> tuple[np.ndarray, np.ndarray]:
        holding = self.holding_cost * self.price * self.on_hand.sum(axis=1)
        lost = self.lost_sales_cost * self.price * self.lost.sum(axis=1)
        return holding, lost

    def summary(self) -> dict[str, float]:
        """Service and cost over all series; costs are summed, in currency units."""
        holding, lost = self._costs()
        demanded = self.demand.sum()
        return {
            "cycle_service_level": float(1 - self.cycle_stockouts().mean()),
            "fill_rate": float(self.sales.sum() / demanded) if demanded > 0 else 1.0,
            "avg_on_hand": float(self.on_hand.mean()),
            "holding_cost": float(holding.sum()),
            "lost_sales_cost": float(lost.sum()),
            "total_cost": float(holding.sum() + lost.sum()),
        }

    def per_series(self) -> pd.DataFrame:
        """The summary's metrics for each series, one row per series in input order."""
        holding, lost = self._costs()
        demanded = self.demand.sum(axis=1)
        sold = self.sales.sum(axis=1)
        fill = np.divide(sold, demanded, out=np.ones_like(sold), where=demanded > 0)
        frame = pd.DataFrame(
            {
                "cycle_service_level": 1 - self.cycle_stockouts().mean(axis=1),
                "fill_rate": fill,
                "avg_on_hand": self.on_hand.mean(axis=1),
                "holding_cost": holding,
                "lost_sales_cost": lost,
                "total_cost": holding + lost,
            }
        )
        frame.index.name = "series"
        return frame

    def daily_on_hand(self) -> np.ndarray:
        """(T,) end-of-day units on hand, summed over series."""
        return self.on_hand.sum(axis=0)


class Stock:
    """The day's dynamics of n series, shared by `simulate` and the learned policy's environment
    (`supplyml.replenishing.env`): `receive`, then `order` (on review days), then `serve`.

    `pipeline[:, k]` holds what arrives in k + 1 days. An order arrives `lead_time` days after it is
    placed; with lead time 0 it is on hand at once, before that day's demand.
    """

    def __init__(self, on_hand: np.ndarray, lead_time: int):
        self.on_hand = np.array(on_hand, dtype=float)
        self.pipeline = np.zeros((len(self.on_hand), lead_time))

    def receive(self) -> None:
        if self.pipeline.shape[1]:
            self.on_hand += self.pipeline[:, 0]
            self.pipeline = np.roll(self.pipeline, -1, axis=1)
            self.pipeline[:, -1] = 0.0

    def position(self) -> np.ndarray:
        """On hand plus on order."""
        return self.on_hand + self.pipeline.sum(axis=1)

    def order(self, quantity: np.ndarray) -> np.ndarray:
        quantity = np.asarray(quantity, dtype=float)
        if self.pipeline.shape[1]:
            self.pipeline[:, -1] += quantity
        else:
            self.on_hand += quantity
        return quantity

    def serve(self, demand: np.ndarray) -> np.ndarray:
        """Meets what demand it can from stock on hand; the rest is lost. Returns the units sold."""
        sold = np.minimum(self.on_hand, demand)
        self.on_hand -= sold
        return sold


def simulate(
    demand: np.ndarray,
    levels: np.ndarray,
    lead_time: int,
    review_period: int,
    price: np.ndarray,
    holding_cost: float,
    lost_sales_cost: float,
    initial_on_hand: np.ndarray | None = None,
) -> Simulation:
    """Replay order-up-to levels (n, T) against actual demand (n, T), lost sales, from nothing on order.

    Levels are read on review days only; other days' values are ignored and may be anything.
    `initial_on_hand` defaults to the first review's level, so every policy starts at its own target.
    """
    _check_days("lead_time", lead_time, minimum=0)
    _check_days("review_period", review_period, minimum=1)
    demand = _nonnegative("demand", demand, ndim=2)
    n, T = demand.shape
    if n == 0 or T == 0:
        raise ValueError(f"demand must hold at least one series and one day, got shape {demand.shape}")
    levels = np.asarray(levels, dtype=float)
    if levels.shape != demand.shape:
        raise ValueError(f"levels must have the demand's shape {demand.shape}, got {levels.shape}")
    read = levels[:, review_days(T, review_period)]
    if not (np.isfinite(read) & (read >= 0)).all():
        series, review = np.argwhere(~(np.isfinite(read) & (read >= 0)))[0]
        raise ValueError(
            f"levels must be finite and >= 0 on review days; series {series}, "
            f"day {review * review_period} has {read[series, review]}"
        )
    if initial_on_hand is None:
        initial_on_hand = levels[:, 0]
    return replay(
        demand,
        lambda d, stock: np.maximum(0.0, levels[:, d] - stock.position()),
        lead_time,
        review_period,
        price,
        holding_cost,
        lost_sales_cost,
        initial_on_hand,
    )


def replay(
    demand: np.ndarray,
    decide: Callable[[int, Stock], np.ndarray],
    lead_time: int,
    review_period: int,
    price: np.ndarray,
    holding_cost: float,
    lost_sales_cost: float,
    initial_on_hand: np.ndarray,
) -> Simulation:
    """Replay any ordering rule against actual demand (n, T): on each review day d, after the day's
    arrivals, `decide(d, stock)` returns the units to order per series (a learned policy's, or base
    stock's S minus the position, as `simulate` passes)."""
    _check_days("lead_time", lead_time, minimum=0)
    _check_days("review_period", review_period, minimum=1)
    demand = _nonnegative("demand", demand, ndim=2)
    n, T = demand.shape
    price = _nonnegative("price", price, ndim=1, length=n)
    for name, value in (("holding_cost", holding_cost), ("lost_sales_cost", lost_sales_cost)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite fraction of price >= 0, got {value}")
    stock = _nonnegative("initial_on_hand", initial_on_hand, ndim=1, length=n)

    on_hand, sales, orders = (np.zeros((n, T)) for _ in range(3))
    inventory = Stock(stock, lead_time)
    for d in range(T):
        inventory.receive()
        if d % review_period == 0:
            orders[:, d] = inventory.order(decide(d, inventory))
        sales[:, d] = inventory.serve(demand[:, d])
        on_hand[:, d] = inventory.on_hand
    lost = demand - sales

    # Copies, so that freezing the result leaves the caller's demand and price writable.
    arrays = (on_hand, sales, lost, orders, demand.copy(), price.copy())
    for a in arrays:
        a.setflags(write=False)  # a frozen result should not be edited through its arrays either
    return Simulation(
        *arrays, holding_cost=float(holding_cost), lost_sales_cost=float(lost_sales_cost), review_period=int(review_period)
    )


def perfect_foresight_levels(demand: np.ndarray, lead_time: int, review_period: int) -> np.ndarray:
    """At each review t, S = actual demand over [t, t + L + R), cut at the last day: the oracle policy.

    Stock that covers exactly the demand until the next order can arrive never runs out and leaves
    little over: the gap between a policy and this one is what better forecasts could still save.
    """
    _check_days("lead_time", lead_time, minimum=0)
    _check_days("review_period", review_period, minimum=1)
    demand = _nonnegative("demand", demand, ndim=2)
    n, T = demand.shape
    window = lead_time + review_period
    # Zero demand after the last day truncates windows there; a direct sum per window keeps no float drift.
    padded = np.concatenate([demand, np.zeros((n, window - 1))], axis=1)
    sums = sliding_window_view(padded, window, axis=1)[:, review_days(T, review_period)].sum(axis=2)
    return expand_levels(sums, T, review_period)


def moving_average_levels(
    history: np.ndarray,
    demand: np.ndarray,
    lead_time: int,
    review_period: int,
    service_level: float,
    window: int = 28,
) -> np.ndarray:
    """The classical policy: S = (L+R) mu + z sigma sqrt(L+R) from the last `window` days of demand.

    At review t, mu and sigma are the mean and the population standard deviation (ddof=0) of actual
    demand over the `window` days before t: history (n, H) first, then the simulated days before t.
    Demand on day t and later is never read.
    """
    _check_days("lead_time", lead_time, minimum=0)
    _check_days("review_period", review_period, minimum=1)
    _check_days("window", window, minimum=1)
    check_service_level(service_level)
    history = _nonnegative("history", history, ndim=2)
    demand = _nonnegative("demand", demand, ndim=2)
    n, T = demand.shape
    if history.shape[0] != n:
        raise ValueError(f"history has {history.shape[0]} series but demand has {n}; pass the same series")
    H = history.shape[1]
    if H < window:
        raise ValueError(f"history covers {H} days, fewer than window={window}; pass more history or a smaller window")

    full = np.concatenate([history, demand], axis=1)
    # The window before review t starts at H + t - window in the concatenated days.
    windows = sliding_window_view(full, window, axis=1)[:, H + review_days(T, review_period) - window]
    mu, sigma = windows.mean(axis=2), windows.std(axis=2)
    levels = normal_order_up_to(mu, sigma, lead_time + review_period, service_level)
    return expand_levels(levels, T, review_period)


def sample_path_levels(paths: np.ndarray, service_level: float) -> np.ndarray:
    """(n,) S from demand sample paths (n, n_samples, L + R) drawn at one review.

    S is the service-level quantile of each path's TOTAL demand over the window (`inventory.order_up_to`,
    as `inventory.base_stock` reads it); a sum of daily quantiles would overstate it.
    """
    check_service_level(service_level)
    paths = np.asarray(paths)
    if paths.ndim != 3 or 0 in paths.shape:
        raise ValueError(f"paths must have non-empty shape (n_series, n_samples, lead_time + review_period), got {paths.shape}")
    if not np.isfinite(paths).all():
        raise ValueError("paths contains NaN or inf")
    return order_up_to(paths.sum(axis=2, dtype=float), service_level, axis=1)  # summed in float64, not copied to it


def _check_days(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a whole number of days, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _nonnegative(name: str, values: np.ndarray, ndim: int, length: int | None = None) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != ndim or (length is not None and values.shape[0] != length):
        want = "(n_series, days)" if ndim == 2 else f"({length},): one value per series"
        raise ValueError(f"{name} must have shape {want}, got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or inf at {np.argwhere(~np.isfinite(values))[0].tolist()}")
    if (values < 0).any():
        raise ValueError(f"{name} must be >= 0, got {values.min()} at {np.argwhere(values < 0)[0].tolist()}")
    return values
