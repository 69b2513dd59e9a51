"""What Optuna tunes for a learned policy: the algorithm's learning rate, discount, width and its own
exploration settings, scored by the simulated cost of the trained policy on one known instance. Trials
train with seeds 100 and up and are costed on their own demand streams, so neither the bench's training
seeds (`policy.seeds`) nor its evaluation stream take part in choosing; the bench then trains every lead
time with the chosen settings, and the pipeline (`pipeline.tune_policy`) trains on the shop's paths with
them."""

from __future__ import annotations

import json
from typing import ClassVar, Literal

import optuna
import pandas as pd

from supplyml.config import Config
from supplyml.replenishing import known
from supplyml.replenishing.learned import ALGORITHMS, train

TRIAL_SEED = 100


class PolicySearch:
    direction: ClassVar[Literal["minimize", "maximize"]] = "minimize"
    metric = "average_cost"

    def __init__(self, cfg: Config, algorithm: str):
        self.cfg, self.algorithm = cfg, algorithm
        self.family = f"policy-{algorithm}"

    def key(self) -> str:
        p = self.cfg.policy
        return json.dumps(
            {
                "params": p.params[self.algorithm],
                "space": p.search_space.model_dump(),
                "lead_time": p.tune_lead_time,
                "timesteps": p.tune_timesteps,
                "envs": p.known_envs,
            },
            sort_keys=True,
        )

    def first_trials(self) -> list[dict]:
        params = self.cfg.policy.params[self.algorithm]
        return [{name: params[name] for name in self._searched() if name in params}]

    def _searched(self) -> tuple[str, ...]:
        return ("learning_rate", "gamma", "width", *ALGORITHMS[self.algorithm].searched)

    def objective(self, trial: optuna.Trial) -> float:
        space = self.cfg.policy.search_space
        chosen = {
            "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
            "gamma": trial.suggest_categorical("gamma", space.gamma),
            "width": trial.suggest_categorical("width", space.width),
        }
        for name, kind in ALGORITHMS[self.algorithm].searched.items():
            values = getattr(space, name)
            chosen[name] = trial.suggest_float(name, *values) if kind == "float" else trial.suggest_categorical(name, values)
        trial.set_user_attr("model", chosen)
        p = self.cfg.policy
        system = known.instance(p.tune_lead_time)
        env = known.environment(system, p.known_envs, seed=TRIAL_SEED + trial.number)
        model = train(
            self.algorithm, env, {**p.params[self.algorithm], **chosen}, p.tune_timesteps, seed=TRIAL_SEED + trial.number
        )
        return known.simulated_cost(system, known.learned(model), p.eval_periods, seed=TRIAL_SEED + trial.number)


def tuning_search(cfg: Config, frame: pd.DataFrame | None, data_md5: str) -> PolicySearch:
    """The tune steps' search: the configured algorithm on the known instance, whatever the shop's data
    (a trial's exact cost needs a known demand law)."""
    return PolicySearch(cfg, cfg.policy.algorithm)
