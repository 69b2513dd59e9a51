"""The gradient-boosted family: one global LightGBM regressor through mlforecast.

Tweedie objective (demand is zero-heavy and non-negative) on lags 7, 14 and 28, rolling means over 7
and 28 days of lag 1, day of week, month and day of month, and the day's promotion and event flags
(planned, so known ahead: callers pass them as `future`; unknown days count as plain days);
forecasts are recursive, each day's prediction feeding the next day's lags. Every other LightGBM
parameter is its default, spelled out in PARAMS so an upgrade cannot move them; seeded and
deterministic (row-wise histograms).

Quantiles: the mean plus the quantiles of each series' signed errors in two rolling-origin backtests
of one horizon each (split-conformal, asymmetric so skewed demand keeps its skew), clipped at zero.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def make_mlforecast(seed: int = 0, n_jobs: int = 1, partitions: int = 0):
    """An unfitted MLForecast with the features above around a seeded Tweedie LightGBM; with `partitions`,
    mlforecast's DistributedMLForecast, whose features are built per partition of series on the workers
    and whose LightGBM trains over all of them (lightgbm.dask)."""
    import mlforecast
    from mlforecast.lag_transforms import RollingMean

    features: dict[str, Any] = {
        "freq": "D",
        "lags": list(LAGS),
        "lag_transforms": {1: [RollingMean(window_size=w) for w in ROLLING_MEAN_WINDOWS]},
        "date_features": list(DATE_FEATURES),
    }
    if partitions:
        from mlforecast.distributed import DistributedMLForecast
        from mlforecast.distributed.models.dask.lgb import DaskLGBMForecast

        # No n_jobs: lightgbm.dask trains with each worker's own thread count.
        model = DaskLGBMForecast(**PARAMS, random_state=seed)
        return DistributedMLForecast({"lightgbm": model}, num_partitions=partitions, **features)
    import lightgbm

    model = lightgbm.LGBMRegressor(**PARAMS, random_state=seed, n_jobs=n_jobs)
    return mlforecast.MLForecast(models={"lightgbm": model}, num_threads=n_jobs, **features)


def fit_mlforecast(df: pd.DataFrame, seed: int = 0, n_jobs: int = 1):
    """make_mlforecast's model fitted on `df`, here or on the open compute session's cluster; either way
    an MLForecast that predicts in this process."""
    partitions = compute.partitions()
    mlf = make_mlforecast(seed, n_jobs, partitions).fit(compute.frame(df), static_features=[])
    return mlf.to_local() if partitions else mlf


def cross_validation(horizon: int, seed: int, n_jobs: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Rows -> [unique_id, error] of BACKTESTS refitted windows of `horizon` days (`backtest_errors`)."""

    def errors(rows: pd.DataFrame) -> pd.DataFrame:
        mlf = make_mlforecast(seed, n_jobs, compute.partitions())
        kwargs = {"n_windows": BACKTESTS, "h": horizon, "step_size": horizon, "refit": True, "static_features": []}
        cv = compute.nixtla(mlf.cross_validation, rows, **kwargs)
        return pd.DataFrame({"unique_id": cv["unique_id"].to_numpy(), "error": (cv["y"] - cv["lightgbm"]).to_numpy(dtype=float)})

    return errors


def frame(panel: pd.DataFrame) -> pd.DataFrame:
    """The target and the flags: mlforecast treats every other column as a dynamic regressor."""
    out = panel[["unique_id", "ds", "y"]].assign(**{f: panel[f] if f in panel else 0.0 for f in FLAGS})
    return out.astype({f: float for f in FLAGS}).sort_values(["unique_id", "ds"], ignore_index=True)


class LightGBM(Forecaster):
    kind = "lightgbm"
    history_days = FEATURE_DAYS + 7
    candidates = ("lightgbm",)

    @classmethod
    def candidate(cls, name, cfg, params):
        return lambda panel: cls.fit(panel, cfg.features.horizon, seed=cfg.seed, n_jobs=cfg.evaluation.n_jobs)

    def __init__(self, mlf, residuals: Residuals, history: pd.DataFrame):
        self.mlf, self.residuals = mlf, residuals
        super().__init__(history)

    @classmethod
    def fit(cls, panel: pd.DataFrame, horizon: int, seed: int = 0, n_jobs: int = 1) -> LightGBM:
        df = frame(panel)
        lengths = df.groupby("unique_id").size()
        if lengths.max() < FEATURE_DAYS:
            raise ValueError(f"lightgbm needs a series with >= {FEATURE_DAYS} days; the longest has {lengths.max()}")
        from lightgbm.basic import LightGBMError

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*feature names.*")
            try:
                mlf = fit_mlforecast(df, seed, n_jobs)
                errors, _ = backtest_errors(df, horizon, FEATURE_DAYS, cross_validation(horizon, seed, n_jobs))
            except LightGBMError as e:  # e.g. Tweedie on rows that sold nothing: a panel it cannot fit
                raise ValueError(f"lightgbm cannot fit this panel: {e}") from e
        return cls(mlf, Residuals.from_errors(errors, df), panel)

    def quantiles(self, skus, horizon, levels, future=None):
        new = frame(self.history_of(skus))
        dates = self.forecast_dates(horizon)
        flags = future_flags(future, skus, dates)
        ahead = pd.DataFrame(
            {
                "unique_id": np.repeat(skus, horizon),
                "ds": np.tile(dates, len(skus)),
                **{f: np.zeros(len(skus) * horizon) if v is None else v.ravel() for f, v in flags.items()},
            }
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*feature names.*")
            raw = self.mlf.predict(horizon, new_df=new, X_df=ahead)
        mean = raw.set_index(["unique_id", "ds"])["lightgbm"].unstack().reindex(skus).to_numpy(dtype=float)
        return self.residuals.band(mean, skus, levels)

    def _save_state(self, path: Path) -> dict:
        (path / "mlforecast.pkl").write_bytes(pickle.dumps(self.mlf))
        return self.residuals.save(path)

    @classmethod
    def _load_state(cls, path: Path, meta: dict, history: pd.DataFrame) -> LightGBM:
        mlf = pickle.loads((path / "mlforecast.pkl").read_bytes())
        return cls(mlf, Residuals.load(path, meta), history)
