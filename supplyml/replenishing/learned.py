"""Learned replenishment policies: deep RL from stable-baselines3 over `ReplenishmentEnv`.

DQN is the family the replenishment literature proposes; PPO is the stronger on-policy alternative.
Both come from stable-baselines3 with their own training loops; this module picks the algorithm, builds
its vectorised environment and turns the trained network into a decision rule: greedy actions on the
environment's observations, in units ordered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger

from supplyml.replenishing.env import ReplenishmentEnv, StableBaselinesEnv


@dataclass(frozen=True)
class Algorithm:
    cls: type[BaseAlgorithm]
    # Its own settings that Optuna searches beside learning rate, discount and width: name -> "float" (a
    # range in `policy.search_space`) or "categorical" (a list there).
    searched: dict[str, str]
    # Its settings for training on `n` series side by side, from the configured ones.
    for_series: Callable[[dict, int], dict] = lambda params, n: params


ALGORITHMS = {
    "dqn": Algorithm(DQN, {"exploration_fraction": "float", "target_update_interval": "categorical"}),
    # Thousands of series side by side: two episodes per rollout already make a large batch.
    "ppo": Algorithm(PPO, {"n_steps": "categorical", "ent_coef": "float"}, lambda params, n: {**params, "n_steps": 2 * n}),
}


def device() -> str:
    """A GPU where the node has one: the networks are small, but the trainer's batches are not."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def train(algorithm: str, env: ReplenishmentEnv, params: dict, timesteps: int, seed: int) -> BaseAlgorithm:
    """Trains `algorithm` ("dqn" or "ppo", with its stable-baselines3 keyword `params`) for `timesteps`
    series-periods: each environment step counts once per series."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {sorted(ALGORITHMS)}")
    params = dict(params)
    width = params.pop("width", None)
    if width is not None:
        params["policy_kwargs"] = {"net_arch": [width, width]}
    model = ALGORITHMS[algorithm].cls("MlpPolicy", StableBaselinesEnv(env, seed), seed=seed, device=device(), verbose=0, **params)
    # A logger with no outputs: SB3's default makes an empty temp folder per fit and never removes it.
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model.learn(total_timesteps=timesteps)


def act(model: BaseAlgorithm, observations: np.ndarray) -> np.ndarray:
    """Greedy actions for a batch of observations."""
    actions, _ = model.predict(np.asarray(observations, dtype=np.float32), deterministic=True)
    return np.asarray(actions)


def state_policy(model: BaseAlgorithm, scale: float):
    """The trained network as a `lost_sales.Policy` (states in units -> whole units ordered), for exact
    costing by the dynamic program. Only for sources without features, such as `PoissonDemand`."""
    return lambda states: act(model, states / scale)
