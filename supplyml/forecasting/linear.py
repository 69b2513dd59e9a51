"""The linear family: one global least-squares regression through mlforecast, on the features a
planner would reach for first.

Features: LightGBM's lags 7, 14 and 28 and the 7- and 28-day means of lag 1; the day of the week as
three weekly Fourier pairs (sin and cos of 2 pi k t / 7, k = 1, 2, 3: together with the intercept
they span any seven weekday means, where a weekday number would enter a linear model as a slope);
the day before's price relative to the series' median (log); and the day's promotion and event
flags. Callers pass the flags as `future`; the price is held at each series' last one. Ordinary least
squares (scikit-learn's LinearRegression; a lag older than the series reads 0): deterministic, no seed.
Forecasts are recursive; quantiles are split-conformal from its own backtests and clipped at zero, as
every `gbm.Regressor`'s.

It fits in the step's own process even with `compute.engine: dask`: mlforecast's distributed backend
trains only its Dask LightGBM and XGBoost models, and least squares is cheap next to them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from supplyml.forecasting import gbm

WEEKLY_PAIRS = 3
MONDAY = pd.Timestamp("1970-01-05")  # day 0 of the weekly terms, so that a weekday keeps its phase


class Fourier:
    """A date feature for mlforecast: sin or cos of 2 pi k (days since a Monday) / period. A named class,
    not a lambda, since the fitted MLForecast is pickled with its features."""

    def __init__(self, kind: str, k: int, period: int = 7):
        self.kind, self.k, self.period = kind, k, period
        self.__name__ = f"{kind}{k}_{period}"  # mlforecast names the feature column after it

    def __call__(self, dates: pd.DatetimeIndex) -> np.ndarray:
        angle = 2 * np.pi * self.k * np.asarray((dates - MONDAY).days) / self.period
        return np.sin(angle) if self.kind == "sin" else np.cos(angle)


class Linear(gbm.Regressor):
    kind = "linear"
    candidates = ("linear",)
    column = "linear"

    @classmethod
    def make(cls, seed: int, n_jobs: int, partitions: int) -> Any:
        import mlforecast
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LinearRegression
        from sklearn.pipeline import make_pipeline

        weekly: list[Any] = [Fourier(kind, k) for k in range(1, WEEKLY_PAIRS + 1) for kind in ("sin", "cos")]
        # A series younger than a lag has no value for it when forecast (training drops such rows); it sold
        # nothing before its first day, so the missing lag is 0. LightGBM takes the gap natively.
        zeros = SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True)
        model = make_pipeline(zeros, LinearRegression())
        return mlforecast.MLForecast(models={cls.column: model}, num_threads=n_jobs, **gbm.features(weekly))

    @classmethod
    def partitions(cls) -> int:
        return 0

    @classmethod
    def frame(cls, panel: pd.DataFrame) -> pd.DataFrame:
        out = gbm.frame(_priced(panel), extra=("price",))
        # Yesterday's price, not the day's own: where a day's price is its revenue over its units (Online
        # Retail), it moves with who bought that day, and would leak the day's demand into its backtests.
        out["price"] = _log_relative_price(out).groupby(out["unique_id"]).shift(1).fillna(0.0)
        return out

    def ahead(self, history: pd.DataFrame, skus: list[str], dates: pd.DatetimeIndex, future) -> pd.DataFrame:
        relative = _log_relative_price(_priced(history))  # the held rows are in order already
        last = relative.groupby(history["unique_id"]).last().reindex(skus).fillna(0.0).to_numpy()
        return super().ahead(history, skus, dates, future).assign(price=np.repeat(last, len(dates)))


def _priced(panel: pd.DataFrame) -> pd.DataFrame:
    return panel if "price" in panel else panel.assign(price=np.nan)


def _log_relative_price(frame: pd.DataFrame) -> pd.Series:
    """`frame`'s price (rows by series, then day) held over the days without one, as log(price / the
    series' median price): one coefficient fits SKUs of any price; 0 for a series without prices."""
    uid = frame["unique_id"]
    price = frame["price"].groupby(uid).ffill().groupby(uid).bfill()
    return np.log(price / price.groupby(uid).transform("median")).fillna(0.0)
