"""Exact long-run average costs of small periodic-review lost-sales systems (Zipkin 2008).

Each period: the order placed `lead_time` periods ago arrives, a new order is placed, demand (Poisson) is
met from stock on hand, unmet demand is lost at `penalty` per unit and what is left is held at `holding`
per unit. The state is (on hand after the arrival, the orders due in 1 .. lead_time - 1 periods). With
this timing Zipkin's instances (mean 5, h = 1, p = 4) give 4.04, 4.40 and 4.73 for lead times 1, 2 and 4.

`optimal` solves the average-cost Bellman equation by relative value iteration; `average_cost` evaluates
any policy the same way, so heuristics (`base_stock`, `capped_base_stock`) are scored exactly, not by
simulation. Zipkin's "standard base-stock" column (4.39, 4.94, 5.83) is base stock at the backorder
system's level (`standard_base_stock_level`). Stock and orders are truncated at `max_on_hand` and `max_order`; the defaults cover
Zipkin's instances (the optimum moves by < 1e-4 when they are raised).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import poisson

Policy = Callable[[np.ndarray], np.ndarray]  # states (n, lead_time) -> order quantity per state


@dataclass(frozen=True)
class LostSales:
    mean: float = 5.0
    holding: float = 1.0
    penalty: float = 4.0
    lead_time: int = 1
    max_order: int = 15
    max_on_hand: int = 40

    def __post_init__(self):
        if self.lead_time < 1:
            raise ValueError(f"lead_time must be >= 1 (an order arrives at the start of a later period), got {self.lead_time}")

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.max_on_hand + 1, *[self.max_order + 1] * (self.lead_time - 1))

    def states(self) -> np.ndarray:
        """Every state as a row: on hand, then the orders due in 1 .. lead_time - 1 periods."""
        return np.indices(self.shape).reshape(len(self.shape), -1).T

    def _demand(self) -> tuple[np.ndarray, np.ndarray]:
        top = int(poisson.ppf(1 - 1e-12, self.mean)) + 1
        d = np.arange(top + 1)
        pmf = poisson.pmf(d, self.mean)
        pmf[-1] += 1.0 - pmf.sum()  # the tail on the last value
        return d, pmf

    def _model(self):
        states = self.states()
        d, pmf = self._demand()
        left = np.maximum(states[:, :1] - d[None, :], 0)  # on hand at the end of the period, per demand
        cost = (self.holding * left + self.penalty * np.maximum(d[None, :] - states[:, :1], 0)) @ pmf
        return states, left, pmf, cost

    def _next(self, states: np.ndarray, left: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Flat index of the next state for each state (rows) and demand (columns)."""
        arriving = states[:, 1:2] if self.lead_time > 1 else order[:, None]
        pipeline = [states[:, k : k + 1] for k in range(2, self.lead_time)] + ([order[:, None]] if self.lead_time > 1 else [])
        parts = [np.minimum(left + arriving, self.max_on_hand)] + [np.broadcast_to(p, left.shape) for p in pipeline]
        return np.ravel_multi_index(tuple(parts), self.shape)

    def optimal(self, tol: float = 1e-7, max_iter: int = 10_000) -> tuple[float, np.ndarray]:
        """The minimal long-run average cost per period and an optimal order per state."""
        states, left, pmf, cost = self._model()
        orders = np.arange(self.max_order + 1)
        nexts = [self._next(states, left, np.full(len(states), q)) for q in orders]
        v = np.zeros(len(states))
        for _ in range(max_iter):
            values = np.stack([cost + v[n] @ pmf for n in nexts])
            new = values.min(0)
            gain, done = _step(v, new, tol)
            v = new - new[0]
            if done:
                return gain, orders[values.argmin(0)]
        raise RuntimeError(f"value iteration did not converge in {max_iter} iterations")

    def average_cost(self, policy: Policy, tol: float = 1e-9, max_iter: int = 100_000) -> float:
        """The long-run average cost per period of `policy`, started from the empty system (nothing on hand
        or on order), as an environment starts. From the distribution over states, not the Bellman equation:
        a learned policy may hold states it never leaves (never orders at zero stock), where the gain differs
        by the start. The chain is made lazy (stay put with probability 1/2): the same stationary costs,
        and no periodic policy keeps the iteration from converging."""
        states, left, pmf, cost = self._model()
        order = np.clip(np.asarray(policy(states), dtype=np.int64), 0, self.max_order)
        nxt = self._next(states, left, order).ravel()
        mu = np.zeros(len(states))
        mu[0] = 1.0
        for _ in range(max_iter):
            moved = np.bincount(nxt, weights=(mu[:, None] * pmf[None, :]).ravel(), minlength=len(states))
            new = (mu + moved) / 2
            if np.abs(new - mu).sum() < tol:
                return float(new @ cost)
            mu = new
        raise RuntimeError(f"policy evaluation did not converge in {max_iter} iterations")


def _step(v: np.ndarray, new: np.ndarray, tol: float) -> tuple[float, bool]:
    """The gain's bounds (Odoni): min and max of new - v bracket it; done when they are within tol."""
    diff = new - v
    low, high = diff.min(), diff.max()
    return float((low + high) / 2), bool(high - low < tol)


def base_stock(level: int) -> Policy:
    """Order up to `level` on the inventory position (on hand plus everything on order)."""
    return lambda states: np.maximum(level - states.sum(1), 0)


def capped_base_stock(level: int, cap: int) -> Policy:
    """Base stock, but never more than `cap` per order (Xin 2021's capped base stock)."""
    return lambda states: np.minimum(np.maximum(level - states.sum(1), 0), cap)


def standard_base_stock_level(system: LostSales) -> int:
    """Zipkin's standard base-stock level: the backorder system's optimum, the p / (p + h) quantile of
    demand over lead time + 1 periods (13 for lead time 1, 18 for 2 on his instances). It is not the best
    base-stock level for lost sales, which is lower (`best_base_stock`)."""
    ratio = system.penalty / (system.penalty + system.holding)
    return int(poisson.ppf(ratio, system.mean * (system.lead_time + 1)))


def best_base_stock(system: LostSales, levels: range) -> tuple[int, float]:
    costs = {s: system.average_cost(base_stock(s)) for s in levels}
    best = min(costs, key=costs.__getitem__)
    return best, costs[best]


def best_capped_base_stock(system: LostSales, levels: range, caps: range) -> tuple[int, int, float]:
    costs = {(s, c): system.average_cost(capped_base_stock(s, c)) for s in levels for c in caps}
    (s, c) = min(costs, key=costs.__getitem__)
    return s, c, costs[(s, c)]
