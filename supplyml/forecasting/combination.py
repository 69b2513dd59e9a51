"""A combination of fitted models is a model like any other: weighted means, and quantiles averaged
level by level across members (Vincentization), so the registry and the service serve it unchanged.
A single chosen model is a combination of one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from supplyml.forecasting.base import Anchored, Forecaster, finish, load


class Combination(Forecaster):
    kind = "combination"

    def __init__(self, members: dict[str, Forecaster], weights: dict[str, float], history: pd.DataFrame):
        if set(weights) != set(members) or not np.isclose(sum(weights.values()), 1.0):
            raise ValueError(f"weights {weights} must cover the members {list(members)} and sum to 1")
        self.members, self.weights = members, weights
        days = [m.history_days for m in members.values()]
        known = [d for d in days if d is not None]
        self.history_days = max(known) if len(known) == len(days) else None
        super().__init__(history)

    def _anchor(self, history: pd.DataFrame | Anchored) -> None:
        super()._anchor(history)
        # A new dict of re-anchored copies: a shallow copy of this combination shares the old one.
        self.members = {name: member.with_history(self.anchored) for name, member in self.members.items()}

    def quantiles(self, skus, horizon, levels, future=None):
        mean, q = 0.0, 0.0
        for name, member in self.members.items():
            m, mq = member.quantiles(skus, horizon, levels, future)
            mean, q = mean + self.weights[name] * m, q + self.weights[name] * mq
        return finish(mean, q)

    def describe(self) -> str:
        return " + ".join(f"{w:.2f} {n}" for n, w in self.weights.items())

    def _save_state(self, path: Path) -> dict:
        for name, member in self.members.items():
            member.save(path / name)
        return {"weights": self.weights}

    @classmethod
    def _load_state(cls, path: Path, meta: dict, history: pd.DataFrame) -> Combination:
        members = {name: load(path / name) for name in meta["weights"]}
        return cls(members, meta["weights"], history)
