"""The statistical family: local statsforecast models (seasonal naive, AutoETS, AutoARIMA, Croston,
ADIDA, window average), one `Statistical` class over the model specs in MODELS (the peers use them too).

A local model's parameters are its history's, so conditioning on a new history refits it: cheap
for all of them but AutoETS and AutoARIMA, which search their own form per series, which is why the
pipeline's candidates leave them out of large panels (`selection.max_series`). Quantiles are the
point forecast plus each series' signed errors in two rolling-origin backtests (split-conformal, as
in `supplyml.forecasting.gbm`). A series younger than the model's minimum history (a product launched
last week) is forecast flat at the mean of the days it has.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import ADIDA, AutoARIMA, AutoETS, CrostonOptimized, SeasonalNaive, WindowAverage

from supplyml import compute
from supplyml.forecasting.base import BACKTESTS, Forecaster, Residuals, backtest_errors

WINDOW = 28  # WindowAverage window: four weeks, so every weekday counts equally
# statsforecast's ETS raises "tiny datasets" for n <= 6 even for its smallest model, ETS(A,N,N)
# (2 parameters + 4); with fewer days than a season AutoETS just leaves the seasonal models out.
ETS_MIN_DAYS = 7


class StatsModel(Protocol):
    """A statsforecast model, as far as this module reads it."""

    alias: str  # the column of its forecast


class Spec(NamedTuple):
    make: Callable[[int], StatsModel]  # season length -> statsforecast model
    min_days: Callable[[int], int]  # season length -> minimum training days per series
    native_intervals: bool  # False: the peers give it pooled split-conformal intervals
    # Worth statsforecast's process pool (n_jobs): the cheap models ran slower over 2 processes than in
    # one even on 5,000 series (sending the series costs more than fitting them); AutoETS ran 2x faster.
    pooled: bool = False


# statsforecast does not raise for series shorter than a model needs: it returns NaN, so the
# minimum is checked by the callers.
MODELS = {
    "seasonal_naive": Spec(lambda season: SeasonalNaive(season_length=season), lambda season: season, True),
    "auto_ets": Spec(lambda season: AutoETS(season_length=season), lambda season: ETS_MIN_DAYS, True, pooled=True),
    # Two seasons, so that a seasonal difference can be tried; with fewer days it fits zeros with a NaN variance.
    # It searches orders per series: 2.3 s per 374-day series against AutoETS's 0.08 s (4.1 s and 0.17 s at 730).
    "arima": Spec(lambda season: AutoARIMA(season_length=season), lambda season: 2 * season, True, pooled=True),
    "croston": Spec(lambda season: CrostonOptimized(), lambda season: 1, False),
    "adida": Spec(lambda season: ADIDA(), lambda season: 1, False),
    "window_average": Spec(lambda season: WindowAverage(window_size=WINDOW), lambda season: WINDOW, False),
}


def jobs(name: str, n_jobs: int) -> int:
    """The processes statsforecast may use for model `name`: `n_jobs` where its pool pays, else 1."""
    return compute.jobs(n_jobs) if MODELS[name].pooled else 1


def cross_validation(sf: StatsForecast, alias: str, horizon: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Rows -> [unique_id, error] of BACKTESTS windows of `horizon` days (`backtest_errors`)."""

    def errors(rows: pd.DataFrame) -> pd.DataFrame:
        cv = compute.nixtla(sf.cross_validation, rows, h=horizon, n_windows=BACKTESTS, step_size=horizon)
        return pd.DataFrame({"unique_id": cv["unique_id"], "error": cv["y"] - cv[alias]})

    return errors


class Statistical(Forecaster):
    kind = "statsforecast"
    candidates = tuple(MODELS)

    @classmethod
    def candidate(cls, name, cfg, params):
        ev = cfg.evaluation
        return lambda panel: cls.fit(panel, name, cfg.features.horizon, ev.season_length, ev.n_jobs)

    def __init__(self, name: str, season: int, n_jobs: int, residuals: Residuals, history: pd.DataFrame):
        if name not in MODELS:
            raise ValueError(f"unknown statistical model {name!r}; choose from {list(MODELS)}")
        self.name, self.season, self.n_jobs, self.residuals = name, season, n_jobs, residuals
        self.min_days = MODELS[name].min_days(season)
        self.alias = MODELS[name].make(season).alias  # statsforecast's column for this model's forecast
        super().__init__(history)

    def _sf(self) -> StatsForecast:
        return StatsForecast(models=[MODELS[self.name].make(self.season)], freq="D", n_jobs=jobs(self.name, self.n_jobs))

    @classmethod
    def fit(cls, panel: pd.DataFrame, name: str, horizon: int, season: int = 7, n_jobs: int = 1) -> Statistical:
        model = cls(name, season, n_jobs, Residuals([], np.zeros((0, 0))), panel)
        df = model.history[["unique_id", "ds", "y"]]
        errors, _ = backtest_errors(df, horizon, model.min_days, cross_validation(model._sf(), model.alias, horizon))
        model.residuals = Residuals.from_errors(errors, df)
        return model

    def quantiles(self, skus, horizon, levels, future=None):
        df = self.history_of(skus)[["unique_id", "ds", "y"]]
        by = df.groupby("unique_id")["y"]
        young = by.size() < self.min_days
        mean = np.repeat(by.mean().reindex(skus).to_numpy()[:, None], horizon, axis=1)
        if not young.all():
            raw = compute.nixtla(self._sf().forecast, df[~df["unique_id"].map(young)], h=horizon)
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
