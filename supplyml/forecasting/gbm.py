"""Global regressors through mlforecast (`Regressor`: one model over every series' feature rows), and
the gradient-boosted family among them: one global LightGBM regressor.

LightGBM: Tweedie objective (demand is zero-heavy and non-negative) on lags 7, 14 and 28, rolling means over 7
and 28 days of lag 1, day of week, month and day of month, and the day's promotion and event flags
(planned, so known ahead: callers pass them as `future`; unknown days count as plain days);
forecasts are recursive, each day's prediction feeding the next day's lags. Every other LightGBM
parameter is its default, spelled out in PARAMS so an upgrade cannot move them; seeded and
deterministic (row-wise histograms).

Quantiles (every Regressor's): the mean plus the quantiles of each series' signed errors in two
rolling-origin backtests of one horizon each (split-conformal, asymmetric so skewed demand keeps its
skew), clipped at zero.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from supplyml import compute
from supplyml.columns import FLAGS
from supplyml.forecasting.base import BACKTESTS, Forecaster, Residuals, backtest_errors, future_flags

LAGS = (7, 14, 28)
ROLLING_MEAN_WINDOWS = (7, 28)  # over lag 1
DATE_FEATURES = ("dayofweek", "month", "day")
# Days of history before a row has every feature: lag 28 and the 28-day mean of lag 1 need 28.
FEATURE_DAYS = max(*LAGS, *ROLLING_MEAN_WINDOWS) + 1
PARAMS: dict[str, Any] = {
    "objective": "tweedie",
    "tweedie_variance_power": 1.5,
    "n_estimators": 100,
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_child_samples": 20,
    "deterministic": True,
    "force_row_wise": True,  # LightGBM's advice with deterministic=True
    "verbosity": -1,
}


def features(date_features: list[Any] = list(DATE_FEATURES)) -> dict[str, Any]:
    """mlforecast's feature settings: the lags and rolling means above, with `date_features`."""
    from mlforecast.lag_transforms import RollingMean

    return {
        "freq": "D",
        "lags": list(LAGS),
        "lag_transforms": {1: [RollingMean(window_size=w) for w in ROLLING_MEAN_WINDOWS]},
        "date_features": date_features,
    }


def make_mlforecast(seed: int = 0, n_jobs: int = 1, partitions: int = 0):
    """An unfitted MLForecast with the features above around a seeded Tweedie LightGBM; with `partitions`,
    mlforecast's DistributedMLForecast, whose features are built per partition of series on the workers
    and whose LightGBM trains over all of them (lightgbm.dask)."""
    import mlforecast

    if partitions:
        from mlforecast.distributed import DistributedMLForecast
        from mlforecast.distributed.models.dask.lgb import DaskLGBMForecast

        # No n_jobs: lightgbm.dask trains with each worker's own thread count.
        model = DaskLGBMForecast(**PARAMS, random_state=seed)
        return DistributedMLForecast({"lightgbm": model}, num_partitions=partitions, **features())
    import lightgbm

    model = lightgbm.LGBMRegressor(**PARAMS, random_state=seed, n_jobs=n_jobs)
    return mlforecast.MLForecast(models={"lightgbm": model}, num_threads=n_jobs, **features())


def frame(panel: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """The target, the flags and the `extra` columns: mlforecast treats every column but the target as a
    dynamic regressor."""
    flags = {f: panel[f] if f in panel else 0.0 for f in FLAGS}
    out = panel[["unique_id", "ds", "y", *extra]].assign(**flags)
    return out.astype({f: float for f in FLAGS}).sort_values(["unique_id", "ds"], ignore_index=True)


class Regressor(Forecaster):
    """A global regressor through mlforecast: one model over every series' feature rows, forecasting
    recursively, with split-conformal quantiles from its own rolling-origin backtests (the mean plus the
    quantiles of each series' signed errors), clipped at zero. A subclass gives the model and its frame."""

    column: ClassVar[str]  # the model's name in mlforecast, and its forecast's column
    history_days = FEATURE_DAYS + 7

    @classmethod
    def make(cls, seed: int, n_jobs: int, partitions: int) -> Any:
        """An unfitted (Distributed)MLForecast, distributed when `partitions` > 0."""
        raise NotImplementedError

    @classmethod
    def partitions(cls) -> int:
        """Partitions of the open compute session it trains over; 0 trains here."""
        return compute.partitions()

    @classmethod
    def frame(cls, panel: pd.DataFrame) -> pd.DataFrame:
        return frame(panel)

    @classmethod
    def candidate(cls, name, cfg, params):
        return lambda panel: cls.fit(panel, cfg.features.horizon, seed=cfg.seed, n_jobs=cfg.evaluation.n_jobs)

    def __init__(self, mlf, residuals: Residuals, history: pd.DataFrame):
        self.mlf, self.residuals = mlf, residuals
        super().__init__(history)

    @classmethod
    def fit_mlforecast(cls, df: pd.DataFrame, seed: int = 0, n_jobs: int = 1):
        """The model fitted on `df` (`frame`'s form), here or on the open session's cluster; either way an
        MLForecast that predicts in this process."""
        partitions = cls.partitions()
        data = compute.frame(df) if partitions else df
        mlf = cls.make(seed, n_jobs, partitions).fit(data, static_features=[])
        return mlf.to_local() if partitions else mlf

    @classmethod
    def cross_validation(cls, horizon: int, seed: int, n_jobs: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
        """Rows -> [unique_id, error] of BACKTESTS refitted windows of `horizon` days (`backtest_errors`)."""

        def errors(rows: pd.DataFrame) -> pd.DataFrame:
            partitions = cls.partitions()
            mlf = cls.make(seed, n_jobs, partitions)
            kwargs = {"n_windows": BACKTESTS, "h": horizon, "step_size": horizon, "refit": True, "static_features": []}
            cv = compute.nixtla(mlf.cross_validation, rows, **kwargs) if partitions else mlf.cross_validation(df=rows, **kwargs)
            error = (cv["y"] - cv[cls.column]).to_numpy(dtype=float)
            return pd.DataFrame({"unique_id": cv["unique_id"].to_numpy(), "error": error})

        return errors

    @classmethod
    def fit(cls, panel: pd.DataFrame, horizon: int, seed: int = 0, n_jobs: int = 1) -> Regressor:
        df = cls.frame(panel)
        lengths = df.groupby("unique_id").size()
        if lengths.max() < FEATURE_DAYS:
            raise ValueError(f"{cls.kind} needs a series with >= {FEATURE_DAYS} days; the longest has {lengths.max()}")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*feature names.*")
            mlf = cls.fit_mlforecast(df, seed, n_jobs)
            errors, _ = backtest_errors(df, horizon, FEATURE_DAYS, cls.cross_validation(horizon, seed, n_jobs))
        return cls(mlf, Residuals.from_errors(errors, df), panel)

    def ahead(self, history: pd.DataFrame, skus: list[str], dates: pd.DatetimeIndex, future) -> pd.DataFrame:
        """The forecast days' regressors, series by series (mlforecast's X_df): the flags when known, else 0.
        `history` is the series' rows as the model holds them (by series, then day)."""
        flags = future_flags(future, skus, dates)
        return pd.DataFrame(
            {
                "unique_id": np.repeat(skus, len(dates)),
                "ds": np.tile(dates, len(skus)),
                **{f: np.zeros(len(skus) * len(dates)) if v is None else v.ravel() for f, v in flags.items()},
            }
        )

    def quantiles(self, skus, horizon, levels, future=None):
        history = self.history_of(skus)
        new = self.frame(history)
        ahead = self.ahead(history, skus, self.forecast_dates(horizon), future)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*feature names.*")
            raw = self.mlf.predict(horizon, new_df=new, X_df=ahead)
        mean = raw.set_index(["unique_id", "ds"])[self.column].unstack().reindex(skus).to_numpy(dtype=float)
        return self.residuals.band(mean, skus, levels)  # clipped at zero there, after the errors are added

    def _save_state(self, path: Path) -> dict:
        (path / "mlforecast.pkl").write_bytes(pickle.dumps(self.mlf))
        return self.residuals.save(path)

    @classmethod
    def _load_state(cls, path: Path, meta: dict, history: pd.DataFrame) -> Regressor:
        mlf = pickle.loads((path / "mlforecast.pkl").read_bytes())
        return cls(mlf, Residuals.load(path, meta), history)


class LightGBM(Regressor):
    kind = "lightgbm"
    candidates = ("lightgbm",)
    column = "lightgbm"

    @classmethod
    def make(cls, seed: int, n_jobs: int, partitions: int) -> Any:
        return make_mlforecast(seed, n_jobs, partitions)

    @classmethod
    def fit(cls, panel: pd.DataFrame, horizon: int, seed: int = 0, n_jobs: int = 1) -> Regressor:
        from lightgbm.basic import LightGBMError

        try:
            return super().fit(panel, horizon, seed, n_jobs)
        except LightGBMError as e:  # e.g. Tweedie on rows that sold nothing: a panel it cannot fit
            raise ValueError(f"lightgbm cannot fit this panel: {e}") from e
