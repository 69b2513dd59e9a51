"""Periodic-review, lost-sales replenishment as a gymnasium environment, vectorised over series.

One step is one review period of R days. The agent sees each series' stock after the day's arrival, the
orders still due (except the one due in L days: none is, at a review) and its demand source's features,
all in units of that series' typical demand per period, so that one network fits every series. It
orders `action × unit`; the R days then run through `supplyml.simulation.Stock`, the same dynamics the
backtest replays, and the reward is minus holding and lost-sales cost (also in the series' own units).

Demand comes from a `Demand` source: `PoissonDemand` for Zipkin's instances, `PathDemand` for real
series, which draws from the forecaster's sample paths (a learned policy is then judged by replaying
what really happened, `supplyml.simulation.replay`). All series' episodes end together, after
`Demand.horizon` reviews, or never (None); like gymnasium's vector environments they reset on the
next step (autoreset "next step").
"""

from __future__ import annotations

from typing import Protocol

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv

from supplyml.simulation import Stock

PATH_QUANTILES = (0.5, 0.8, 0.95)  # of demand over the next L + R days: the learned policy's forecast features
UNIT = 0.1  # a real series orders in tenths of its demand per review period
MIN_SCALE = 0.1  # units per period below which a series counts as this slow, so observations stay finite
MAX_OBSERVATION = 1000.0


class Demand(Protocol):
    n: int  # series
    horizon: int | None  # reviews per episode; None: episodes never end
    price: np.ndarray  # (n,) costs are fractions of it

    def features(self, review: int) -> np.ndarray:
        """(n, f) what the policy knows of demand ahead at this review, before dividing by `scale`."""

    def scale(self, review: int) -> np.ndarray:
        """(n,) typical demand per review period: the unit of observations and rewards."""

    def unit(self, review: int) -> np.ndarray:
        """(n,) units ordered per step of the action."""

    def draw(self, review: int, rng: np.random.Generator) -> np.ndarray:
        """(n, R) the demand of the review period that starts at this review."""

    def initial(self, rng: np.random.Generator) -> np.ndarray:
        """(n,) stock on hand at the first review."""


class PoissonDemand:
    """Zipkin's instances: i.i.d. Poisson demand per period (R = 1), whole units, no forecast features.

    Episodes of `horizon` periods from an empty system: without resets an untrained policy, ordering more
    than the mean, piles up stock without bound and learns from little else.
    """

    def __init__(self, mean: float, n: int, horizon: int | None = 100):
        self.mean, self.n, self.horizon = mean, n, horizon
        self.price = np.ones(n)

    def features(self, review: int) -> np.ndarray:
        return np.zeros((self.n, 0))

    def scale(self, review: int) -> np.ndarray:
        return np.full(self.n, float(self.mean))

    def unit(self, review: int) -> np.ndarray:
        return np.ones(self.n)

    def draw(self, review: int, rng: np.random.Generator) -> np.ndarray:
        return rng.poisson(self.mean, (self.n, 1)).astype(float)

    def initial(self, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(self.n)


def path_features(paths: np.ndarray, review_period: int) -> tuple[np.ndarray, np.ndarray]:
    """From sample paths (n, samples, L + R) at one review: the quantiles of their totals (n, 3), what the
    learned policy knows of demand ahead, and the series' scale (n,), the mean demand per review period.
    /replenish computes both from the same paths its base-stock answer reads."""
    totals = np.asarray(paths).sum(axis=2, dtype=float)  # summed in float64, not copied to it
    features = np.quantile(totals, PATH_QUANTILES, axis=1).T
    scale = np.maximum(totals.mean(axis=1) * review_period / paths.shape[2], MIN_SCALE)
    return features, scale


class PathDemand:
    """Real series at consecutive reviews, with the forecaster's sample paths drawn at each, to train on
    the forecaster's world: a period's demand is one of that review's paths, picked at random.

    paths (n, reviews, samples, L + R): each review's paths, conditioned on the actuals before it.
    """

    def __init__(self, paths: np.ndarray, review_period: int, price: np.ndarray, initial: np.ndarray):
        # Kept as drawn (float32): a float64 copy of every path would be the step's largest array. Each
        # review's paths (in path_features) and each draw are widened where they are read, to the same values.
        self.paths = np.asarray(paths)
        self.n, self.horizon = self.paths.shape[:2]
        self.R = review_period
        pairs = [path_features(self.paths[:, k], review_period) for k in range(self.horizon)]
        self._features = np.stack([f for f, _ in pairs], 1)  # (n, reviews, q)
        self._scale = np.stack([c for _, c in pairs], 1)  # (n, reviews)
        self.price = np.asarray(price, dtype=float)
        self.start = np.asarray(initial, dtype=float)

    def features(self, review: int) -> np.ndarray:
        return self._features[:, review]

    def scale(self, review: int) -> np.ndarray:
        return self._scale[:, review]

    def unit(self, review: int) -> np.ndarray:
        return self._scale[:, review] * UNIT

    def draw(self, review: int, rng: np.random.Generator) -> np.ndarray:
        pick = rng.integers(self.paths.shape[2], size=self.n)
        return self.paths[np.arange(self.n), review, pick, : self.R].astype(float)

    def initial(self, rng: np.random.Generator) -> np.ndarray:
        return self.start


def observe(stock: Stock, lead_time: int, features: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The policy's input at a review: on hand after the day's arrival, the orders due in 1 .. L - 1 days
    and the demand features, each in units of the series' demand per period."""
    raw = np.column_stack([stock.on_hand, stock.pipeline[:, : max(lead_time - 1, 0)], features])
    # Beyond this many periods of demand more stock changes no decision: the network stays on finite inputs.
    return np.minimum(raw / scale[:, None], MAX_OBSERVATION).astype(np.float32)


class ReplenishmentEnv(gym.vector.VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self, demand: Demand, lead_time: int, review_period: int, holding: float, penalty: float, n_actions: int, seed: int = 0
    ):
        if lead_time < 0 or review_period < 1 or n_actions < 2:
            raise ValueError(
                f"need lead_time >= 0, review_period >= 1 and n_actions >= 2; got {lead_time}, {review_period}, {n_actions}"
            )
        self.demand, self.L, self.R = demand, lead_time, review_period
        self.holding, self.penalty = holding, penalty
        self.num_envs = demand.n
        width = 1 + max(lead_time - 1, 0) + demand.features(0).shape[1]
        self.single_observation_space = gym.spaces.Box(0.0, np.inf, (width,), np.float32)
        self.single_action_space = gym.spaces.Discrete(n_actions)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.rng = np.random.default_rng(seed)
        self.stock: Stock | None = None
        self.review = 0
        self._ended = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.stock = Stock(self.demand.initial(self.rng), self.L)
        self.review, self._ended = 0, False
        return self._observe(), {}

    def state(self) -> np.ndarray:
        """(n, 1 + L - 1) raw stock at the review: on hand after the day's arrival, orders due in 1 .. L - 1 days."""
        assert self.stock is not None, "reset() first"
        return np.column_stack([self.stock.on_hand, self.stock.pipeline[:, : max(self.L - 1, 0)]])

    def _observe(self) -> np.ndarray:
        # After the last review there are no features ahead: the final one's stand in for them.
        review = self.review if self.demand.horizon is None else min(self.review, self.demand.horizon - 1)
        assert self.stock is not None, "reset() first"
        return observe(self.stock, self.L, self.demand.features(review), self.demand.scale(review))

    def step(self, actions):
        if self._ended:
            obs, info = self.reset()
            zeros = np.zeros(self.num_envs, dtype=bool)
            return obs, np.zeros(self.num_envs), zeros, zeros, info
        actions = np.clip(np.asarray(actions, dtype=float), 0, self.single_action_space.n - 1)
        ordered = self.stock.order(actions * self.demand.unit(self.review))
        scale = self.demand.scale(self.review)
        demand = self.demand.draw(self.review, self.rng)
        held = lost = 0.0
        for day in range(self.R):
            if day:
                self.stock.receive()
            sold = self.stock.serve(demand[:, day])
            lost = lost + demand[:, day] - sold
            held = held + self.stock.on_hand
        cost = self.demand.price * (self.holding * held + self.penalty * lost)
        self.stock.receive()
        self.review += 1
        truncated = np.full(self.num_envs, self.demand.horizon is not None and self.review >= self.demand.horizon)
        self._ended = bool(truncated[0])
        info = {"cost": cost, "held": held, "lost": lost, "demand": demand, "ordered": ordered}
        obs = self._observe()
        reward = -cost / (self.demand.price * scale)
        return obs, reward, np.zeros(self.num_envs, dtype=bool), truncated, info


class StableBaselinesEnv(VecEnv):
    """A gymnasium vector environment as stable-baselines3's VecEnv (its own vectorised API): SB3 wants
    `done` and the terminal observation in `infos`, and resets at once rather than on the next step."""

    def __init__(self, env: ReplenishmentEnv, seed: int = 0):
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self.env, self._seed = env, seed

    def reset(self):
        obs, _ = self.env.reset(seed=self._seed)
        return obs

    def step_async(self, actions):
        self._actions = actions

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        done = terminated | truncated
        infos = [{} for _ in range(self.num_envs)]
        if done.any():
            for i in range(self.num_envs):
                infos[i] = {"terminal_observation": obs[i], "TimeLimit.truncated": bool(truncated[i] and not terminated[i])}
            obs, _ = self.env.reset()
        return obs, reward.astype(np.float32), done, infos

    def close(self):
        self.env.close()

    def get_attr(self, name, indices=None):
        return [getattr(self.env, name)] * len(self._get_indices(indices))

    def set_attr(self, name, value, indices=None):
        setattr(self.env, name, value)

    def env_method(self, method, *args, indices=None, **kwargs):
        return [getattr(self.env, method)(*args, **kwargs)] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._get_indices(indices))
