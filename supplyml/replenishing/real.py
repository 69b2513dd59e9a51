"""A learned policy on real series: trained on the forecaster's sample paths at a test window's reviews
(`backtest.reviews`, the same paths the forecast base-stock policy orders from), then replayed on what
actually happened beside the forecast base stock, the classical policy and perfect foresight.

Training never sees the window's actual demand: each review's paths condition only on the days before
it, as /replenish's do. The replay starts every policy with the forecast policy's first S on hand.
"""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm

from supplyml import simulation as sim
from supplyml.config import Config
from supplyml.forecasting.backtest import Reviews, policy_simulations
from supplyml.replenishing.env import UNIT, PathDemand, ReplenishmentEnv, observe, path_features
from supplyml.replenishing.learned import ALGORITHMS, act, train


def environment(r: Reviews, cfg: Config, seed: int) -> ReplenishmentEnv:
    inv = cfg.inventory
    demand = PathDemand(r.paths, inv.review_period, r.price, initial=r.levels[:, 0])
    return ReplenishmentEnv(
        demand, inv.lead_time, inv.review_period, inv.holding_cost, inv.lost_sales_cost, n_actions=cfg.policy.n_actions, seed=seed
    )


def fit(r: Reviews, cfg: Config, seed: int, algorithm: str | None = None) -> BaseAlgorithm:
    algorithm = algorithm or cfg.policy.algorithm
    params = ALGORITHMS[algorithm].for_series(dict(cfg.policy.params[algorithm]), r.paths.shape[1])
    return train(algorithm, environment(r, cfg, seed), params, cfg.policy.timesteps, seed)


def orders(
    model: BaseAlgorithm, on_hand: np.ndarray, pipeline: np.ndarray, paths: np.ndarray, lead_time: int, review_period: int
) -> np.ndarray:
    """Units to order per series at one review from its stock and this review's sample paths (n, samples,
    L + R): what /replenish answers with `"policy": "learned"` and what the replay below orders (so the
    gate and the bench judge exactly what is served)."""
    features, scale = path_features(paths, review_period)
    stock = sim.Stock(on_hand, lead_time)
    stock.pipeline[:, : pipeline.shape[1]] = pipeline
    ordered = act(model, observe(stock, lead_time, features, scale)) * scale * UNIT
    # A position that covers every path's demand until the next order can arrive needs nothing more: no
    # order can save a sale there, whatever a network does far outside the stock it learnt on.
    return np.where(stock.position() >= paths.sum(axis=2).max(axis=1), 0.0, ordered)


def replay(model: BaseAlgorithm, r: Reviews, cfg: Config) -> sim.Simulation:
    inv = cfg.inventory
    R, L = inv.review_period, inv.lead_time

    def decide(day: int, stock: sim.Stock) -> np.ndarray:
        return orders(model, stock.on_hand, stock.pipeline[:, : max(L - 1, 0)], r.paths[:, day // R], L, R)

    return sim.replay(r.demand, decide, L, R, r.price, inv.holding_cost, inv.lost_sales_cost, r.levels[:, 0])


def compare(r: Reviews, cfg: Config, models: dict[str, BaseAlgorithm]) -> dict[str, dict[str, float]]:
    """Every policy's summary (cycle service level, fill rate, on hand, costs) on the actual demand."""
    sims = {**policy_simulations(r, cfg), **{name: replay(m, r, cfg) for name, m in models.items()}}
    return {name: s.summary() for name, s in sims.items()}
