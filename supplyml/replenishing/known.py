"""Zipkin's (2008) lost-sales instances, where the optimum is known: Poisson demand with mean 5, holding
1 and lost sales 4 per unit, one order per period. A learned policy is costed two ways: exactly, by
the dynamic program on the states the network is asked about, and by a long simulated run of the
environment on one demand stream that every policy sees (common random numbers)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from scipy import stats
from stable_baselines3.common.base_class import BaseAlgorithm

from supplyml.replenishing.env import PoissonDemand, ReplenishmentEnv
from supplyml.replenishing.learned import act, state_policy
from supplyml.replenishing.lost_sales import (
    LostSales,
    base_stock,
    best_base_stock,
    best_capped_base_stock,
    capped_base_stock,
    standard_base_stock_level,
)

log = logging.getLogger(__name__)
MEAN, HOLDING, PENALTY = 5.0, 1.0, 4.0
EVAL_SERIES = 100  # a long run is this many independent series side by side
EVAL_SEED = 2008  # the demand stream of every simulated evaluation
ZIPKIN = {
    1: {"optimal": 4.04, "standard_base_stock": 4.39},
    2: {"optimal": 4.40, "standard_base_stock": 4.94},
    4: {"optimal": 4.73, "standard_base_stock": 5.83, "capped_base_stock": 4.80, "myopic_2": 4.82},
}


def instance(lead_time: int) -> LostSales:
    return LostSales(mean=MEAN, holding=HOLDING, penalty=PENALTY, lead_time=lead_time)


def references(system: LostSales) -> dict:
    """Exact costs: the optimum, standard base stock, the best base stock and the best capped base stock.
    Base stock is costed with orders capped only at the state space's edge, raised above its level."""
    optimal, _ = system.optimal()
    standard = standard_base_stock_level(system)
    wide = LostSales(
        system.mean,
        system.holding,
        system.penalty,
        system.lead_time,
        max_order=standard + 1,
        max_on_hand=max(system.max_on_hand, standard + 10),
    )
    row = {
        "lead_time": system.lead_time,
        "optimal": optimal,
        "standard_level": standard,
        "standard_base_stock": wide.average_cost(base_stock(standard)),
    }
    row["best_level"], row["best_base_stock"] = best_base_stock(wide, range(standard - 4, standard + 1))
    s, c, cost = best_capped_base_stock(system, range(standard - 5, standard + 1), range(4, system.max_order + 1))
    return {**row, "capped_level": s, "cap": c, "capped_base_stock": cost, "zipkin": ZIPKIN.get(system.lead_time, {})}


def reference_policies(row: dict) -> dict:
    """The references' decision rules from a `references` row, for simulated runs beside learned ones."""
    return {
        "standard base stock": base_stock(row["standard_level"]),
        "capped base stock": capped_base_stock(row["capped_level"], row["cap"]),
    }


def environment(system: LostSales, n: int, seed: int, horizon: int | None = 100) -> ReplenishmentEnv:
    return ReplenishmentEnv(
        PoissonDemand(system.mean, n, horizon),
        system.lead_time,
        1,
        system.holding,
        system.penalty,
        n_actions=system.max_order + 1,
        seed=seed,
    )


def exact_cost(system: LostSales, model: BaseAlgorithm) -> float:
    """The dynamic program's cost of the trained policy; NaN when its chain mixes too slowly to converge
    (an untrained network ordering about the mean drifts like a random walk): the simulated cost stands."""
    try:
        return system.average_cost(state_policy(model, system.mean))
    except RuntimeError as e:
        log.warning("%s: exact cost not available", e)
        return float("nan")


def simulated_cost(
    system: LostSales, decide: Callable[[ReplenishmentEnv, np.ndarray], np.ndarray], periods: int, seed: int = EVAL_SEED
) -> float:
    """Average cost per period over `periods` (split over EVAL_SERIES series) from an empty start, on
    demand stream `seed`. `decide(env, observations)` returns the units ordered per series."""
    env = environment(system, EVAL_SERIES, seed, horizon=None)
    obs, _ = env.reset(seed=seed)
    total = 0.0
    steps = max(periods // EVAL_SERIES, 1)
    for _ in range(steps):
        obs, _, _, _, info = env.step(decide(env, obs))
        total += info["cost"].sum()
    return total / (steps * EVAL_SERIES)


def learned(model: BaseAlgorithm):
    return lambda env, obs: act(model, obs)


def heuristic(policy):
    """A `lost_sales.Policy` (states -> units) as a `decide` for `simulated_cost`."""
    return lambda env, obs: policy(env.state())


def interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student t interval (0 for a single value)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), 0.0
    half = stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)
