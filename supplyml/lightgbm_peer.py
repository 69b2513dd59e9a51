"""mlforecast + LightGBM as a benchmark peer: what a user's own LightGBM script would give.

The model is the LightGBM family's (`supplyml.forecasting.gbm`: Tweedie objective, lags 7/14/28,
rolling means, calendar features, recursive); as a peer it gets the same symmetric pooled
split-conformal bands as the flat statsforecast peers, so it is scored the way it always was.

Intervals: pooled split-conformal, the same as the flat statsforecast peers (see
supplyml.baselines). Two rolling-origin backtests of length `horizon`, each with its own refit,
give 2 × horizon |errors| per series; quantile q is mean ± the level-quantile of those errors,
clipped at zero and sorted. Series too short for the backtests (fewer than 2 × horizon + 29 days;
a row needs 28 days of history for every lag feature) get mean ± z_q × sd(training demand).
mlforecast's own PredictionIntervals is not used, for two reasons:
- it takes a quantile per horizon step from only n_windows errors (and from one model fitted before
  both windows, refit=False). Measured with `benchmarks/peers.py --compare-lightgbm-intervals` on
  Online Retail (last 28 days held out, the 1,731 series it accepts): PredictionIntervals(n_windows=2,
  h=28) covered 65-66% of test days with its 95% band and scored WSPL 0.53 with either method, the
  pooled band 93% and WSPL 0.43, the same point forecast;
- it refuses the whole panel if any one series is shorter than h × n_windows + 1 days, and the real
  panel has series of 51 days.

Known weakness of the specified features on Online Retail: with one year of history the only
December rows that have every lag are the Christmas shutdown (29-31 December 2010, no sales), so
the month feature teaches the model that December sells nothing, and the forecast collapses from
1 December on. That is the bulk of its volume bias on the last-28-days origin.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from supplyml.baselines import BACKTESTS, check_request, conformal_or_gaussian, finish
from supplyml.forecasting.gbm import FEATURE_DAYS, make_mlforecast

log = logging.getLogger(__name__)


def _point(df: pd.DataFrame, horizon: int, seed: int, n_jobs: int) -> pd.DataFrame:
    raw = make_mlforecast(seed, n_jobs).fit(df, static_features=[]).predict(h=horizon)
    return pd.DataFrame(
        {"unique_id": raw["unique_id"].to_numpy(), "ds": raw["ds"].to_numpy(), "mean": raw["lightgbm"].to_numpy(dtype=float)}
    )


def _backtest_errors(df: pd.DataFrame, horizon: int, seed: int, n_jobs: int) -> pd.DataFrame:
    cv = make_mlforecast(seed, n_jobs).cross_validation(
        df, n_windows=BACKTESTS, h=horizon, step_size=horizon, refit=True, static_features=[]
    )
    return pd.DataFrame({"unique_id": cv["unique_id"].to_numpy(), "error": (cv["y"] - cv["lightgbm"]).to_numpy(dtype=float)})


def forecast_lightgbm(
    train: pd.DataFrame,
    horizon: int,
    quantiles: list[float],
    seed: int = 0,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Forecast `horizon` days past each series' last training day: [unique_id, ds, mean, q...].

    train is the zero-filled daily panel; columns other than unique_id, ds and y are ignored.
    """
    check_request(horizon, quantiles)
    missing = [c for c in ("unique_id", "ds", "y") if c not in train.columns]
    if missing:
        raise ValueError(f"train lacks columns {missing}; expected the daily panel [unique_id, ds, y]")
    df = train[["unique_id", "ds", "y"]].sort_values(["unique_id", "ds"], ignore_index=True)
    lengths = df.groupby("unique_id").size()
    if lengths.max() < FEATURE_DAYS:
        raise ValueError(
            f"peer lightgbm needs at least one series with >= {FEATURE_DAYS} training days (lag 28 and "
            f"the 28-day mean of lag 1 leave nothing to train on otherwise); the longest has {lengths.max()}"
        )

    with warnings.catch_warnings():
        # LightGBM's sklearn wrapper warns about feature names on recursive predict; harmless.
        warnings.filterwarnings("ignore", message=".*feature names.*")
        out = conformal_or_gaussian(
            "lightgbm",
            df,
            _point(df, horizon, seed, n_jobs),
            lambda rows: _backtest_errors(rows, horizon, seed, n_jobs),
            FEATURE_DAYS,
            horizon,
            quantiles,
        )
    out = finish(out, "lightgbm", quantiles)
    if not np.isfinite(out["mean"]).all():
        raise RuntimeError("peer lightgbm produced non-finite forecasts")
    return out
