"""The statistical family: local statsforecast models (seasonal naive, AutoETS, Croston, ADIDA,
window average), one `Statistical` class over the peer specs in `supplyml.baselines.PEERS`.

A local model's parameters are its history's, so conditioning on a new history refits it: cheap
for all of them but AutoETS, which is why the pipeline's candidates leave AutoETS out of large
panels (`selection.auto_ets_max_series`). Quantiles are the point forecast plus each series' signed
errors in two rolling-origin backtests (split-conformal, as in `supplyml.forecasting.gbm`). A series
younger than the model's minimum history (a product launched last week) is forecast flat at the
mean of the days it has.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from statsforecast import StatsForecast

from supplyml.baselines import PEERS
from supplyml.forecasting.base import Forecaster, Residuals

BACKTESTS = 2


class Statistical(Forecaster):
    kind = "statsforecast"

    def __init__(self, name: str, season: int, n_jobs: int, residuals: Residuals, history: pd.DataFrame):
        if name not in PEERS:
            raise ValueError(f"unknown statistical model {name!r}; choose from {list(PEERS)}")
        self.name, self.season, self.n_jobs, self.residuals = name, season, n_jobs, residuals
        self.min_days = PEERS[name].min_days(season)
        self.alias = PEERS[name].make(season).alias  # statsforecast's column for this model's forecast
        super().__init__(history)

    def _sf(self) -> StatsForecast:
        return StatsForecast(models=[PEERS[self.name].make(self.season)], freq="D", n_jobs=self.n_jobs)

    @classmethod
    def fit(cls, panel: pd.DataFrame, name: str, horizon: int, season: int = 7, n_jobs: int = 1) -> Statistical:
        model = cls(name, season, n_jobs, Residuals([], np.zeros((0, 0))), panel)
        df = model.history[["unique_id", "ds", "y"]]
        lengths = df.groupby("unique_id").size()
        long = lengths.index[lengths >= BACKTESTS * horizon + model.min_days]
        errors = pd.DataFrame(columns=["unique_id", "error"])
        if len(long):
            cv = model._sf().cross_validation(
                df=df[df["unique_id"].isin(long)], h=horizon, n_windows=BACKTESTS, step_size=horizon
            )
            errors = pd.DataFrame({"unique_id": cv["unique_id"], "error": cv["y"] - cv[model.alias]})
        model.residuals = Residuals.from_errors(errors, df)
        return model

    def quantiles(self, skus, horizon, levels, future=None):
        self.check_skus(skus)
        df = self.history.loc[self.history["unique_id"].isin(skus), ["unique_id", "ds", "y"]]
        by = df.groupby("unique_id")["y"]
        young = by.size() < self.min_days
        mean = np.repeat(by.mean().reindex(skus).to_numpy()[:, None], horizon, axis=1)
        if not young.all():
            raw = self._sf().forecast(df=df[~df["unique_id"].map(young)], h=horizon)
            fitted = raw.set_index(["unique_id", "ds"])[self.alias].unstack().reindex(skus).to_numpy(dtype=float)
            mean = np.where(young.reindex(skus).to_numpy()[:, None], mean, fitted)
        if np.isnan(mean).any():
            raise RuntimeError(f"{self.name} produced NaN forecasts; check the series lengths")
        return self.residuals.band(mean, skus, levels)

    def _save_state(self, path: Path) -> dict:
        return {"name": self.name, "season": self.season, "n_jobs": self.n_jobs, **self.residuals.save(path)}

    @classmethod
    def _load_state(cls, path: Path, meta: dict, history: pd.DataFrame) -> Statistical:
        return cls(meta["name"], meta["season"], meta["n_jobs"], Residuals.load(path, meta), history)
