"""The peers the learned forecaster must beat: statsforecast's classical models and mlforecast + LightGBM.

Every peer returns the same frame as the forecaster: [unique_id, ds, mean, q...].

Intervals:
- SeasonalNaive, AutoETS and AutoARIMA have native Gaussian intervals: SeasonalNaive's from its
  in-sample residuals (they widen each season), AutoETS's and AutoARIMA's from the selected model's
  forecast variance (they widen with the horizon unless its smoothing weights are near zero). Quantile q < 0.5 is
  the lower bound of the central interval of level 100(1 - 2q), q > 0.5 the upper bound of level
  100(2q - 1), q = 0.5 the point forecast.
- CrostonOptimized, ADIDA and WindowAverage have none and forecast a flat line, so they get
  split-conformal intervals: mean ± the level-quantile of |error| from two rolling-origin backtests
  of length `horizon`, pooled over the horizon (2 × horizon scores per series). statsforecast's own
  ConformalIntervals(n_windows=2) takes quantiles per horizon step from only 2 errors each; on a
  synthetic intermittent panel of 1,700 series its 95% band covered 67% of test days, the pooled
  band 93%. Backtests need 2 × horizon days plus the model's own minimum history; shorter series
  get mean ± z_q × sd(training demand), the spread of demand around a flat forecast.
- The LightGBM and linear peers (names "lightgbm" and "linear", not in the default set: see below) use
  the same pooled split-conformal intervals and the same fallback.
Means and quantiles are then clipped at zero demand (AutoETS's additive models can forecast below
zero on intermittent series) and quantiles sorted so they cannot cross.

The LightGBM peer, mlforecast + LightGBM: what a user's own LightGBM script would give.

The model is the LightGBM family's (`supplyml.forecasting.gbm`: Tweedie objective, lags 7/14/28,
rolling means, calendar features, recursive); as a peer it gets the same symmetric pooled
split-conformal bands as the flat statsforecast peers, so it is scored the way it always was.

Its backtests refit at each window; series too short for them (fewer than 2 × horizon + 29 days: a
row needs 28 days of history for every lag feature) get the Gaussian band. mlforecast's own
PredictionIntervals is not used, for two reasons:
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
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsforecast import StatsForecast

from supplyml import compute
from supplyml.forecasting import gbm, linear, statistical
from supplyml.forecasting.base import backtest_errors
from supplyml.forecasting.metrics import quantile_col

log = logging.getLogger(__name__)


def _level(q: float) -> int | float:
    # statsforecast names columns with str(level): keep 95 as "95", not "95.0".
    lv = round(100 * abs(2 * q - 1), 6)
    return int(lv) if float(lv).is_integer() else lv


def interval_levels(quantiles) -> list[int | float]:
    """The central-interval levels (50, 95, ...) whose bounds are `quantiles`; the median is the point."""
    return sorted({_level(q) for q in quantiles if not np.isclose(q, 0.5)})


def from_intervals(raw: pd.DataFrame, alias: str, quantiles) -> pd.DataFrame:
    """Nixtla's `alias`, `alias-lo-95`, `alias-hi-95`, ... columns as `mean` and quantile columns."""
    out = raw[["unique_id", "ds"]].assign(mean=raw[alias].to_numpy())
    for q in quantiles:
        side = "" if np.isclose(q, 0.5) else f"-{'lo' if q < 0.5 else 'hi'}-{_level(q)}"
        out[quantile_col(q)] = raw[alias + side].to_numpy()
    return out


def _native(sf: StatsForecast, df, alias, horizon, quantiles) -> pd.DataFrame:
    # statsforecast annotates `level` as list[int] but takes any number: 33.4 gives the columns `alias-lo-33.4`, ...
    raw = compute.nixtla(sf.forecast, df, h=horizon, level=interval_levels(quantiles) or None)
    return from_intervals(raw, alias, quantiles)


def _symmetric(point: pd.DataFrame, half_width, quantiles) -> pd.DataFrame:
    """mean ± half_width(q): half_width maps q to one half-width per row."""
    out = point.copy()
    for q in quantiles:
        out[quantile_col(q)] = out["mean"].to_numpy() + np.sign(q - 0.5) * half_width(q)
    return out


def conformal_band(point: pd.DataFrame, errors: pd.DataFrame, quantiles) -> pd.DataFrame:
    """Pooled split-conformal quantiles: mean ± the level-quantile of each series' backtest |error|.

    point: [unique_id, ds, mean]; errors: [unique_id, error], every backtest day of every window.
    """
    abs_errors = errors["error"].abs().groupby(errors["unique_id"])
    # "higher" picks an observed error, erring wide rather than narrow with few scores.
    width = {lv: abs_errors.quantile(lv / 100, interpolation="higher") for lv in {_level(q) for q in quantiles}}
    return _symmetric(point, lambda q: point["unique_id"].map(width[_level(q)]).to_numpy(), quantiles)


def gaussian_band(point: pd.DataFrame, train: pd.DataFrame, quantiles) -> pd.DataFrame:
    """mean ± z_q × sd(training demand): the fallback for series too short to backtest."""
    sd = train.groupby("unique_id")["y"].std(ddof=0)
    spread = point["unique_id"].map(sd).to_numpy()
    return _symmetric(point, lambda q: abs(norm.ppf(q)) * spread, quantiles)


def finish(out: pd.DataFrame, name: str, quantiles) -> pd.DataFrame:
    """Sort rows, refuse NaN, clip mean and quantiles at zero and sort quantiles so none cross."""
    out = out.sort_values(["unique_id", "ds"], ignore_index=True)
    if out.drop(columns=["unique_id", "ds"]).isna().any(axis=None):
        raise RuntimeError(f"peer {name} produced NaN forecasts; check the series lengths")
    qcols = [quantile_col(q) for q in sorted(quantiles)]
    out["mean"] = np.clip(out["mean"].to_numpy(dtype=float), 0, None)
    out[qcols] = np.sort(np.clip(out[qcols].to_numpy(dtype=float), 0, None), axis=1)
    return out


def check_request(horizon: int, quantiles) -> None:
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if not quantiles or any(not 0 < q < 1 for q in quantiles):
        raise ValueError(f"quantiles must be a non-empty list strictly between 0 and 1, got {quantiles}")


def _point(sf: StatsForecast, df, alias, horizon) -> pd.DataFrame:
    raw = compute.nixtla(sf.forecast, df, h=horizon)
    return raw[["unique_id", "ds"]].assign(mean=raw[alias].to_numpy())


def conformal_or_gaussian(
    name: str,
    df: pd.DataFrame,
    point: pd.DataFrame,
    cross_validate: Callable[[pd.DataFrame], pd.DataFrame],
    min_days: int,
    horizon: int,
    quantiles,
) -> pd.DataFrame:
    """Conformal bands for the series long enough to backtest (`backtest_errors`), Gaussian bands for the rest."""
    errors, backtest_ok = backtest_errors(df, horizon, min_days, cross_validate)
    long_rows, long_fc = df["unique_id"].isin(backtest_ok), point["unique_id"].isin(backtest_ok)
    parts = [conformal_band(point[long_fc], errors, quantiles)] if long_fc.any() else []
    if not long_fc.all():
        log.info(
            "%s: %d series too short to backtest get Gaussian instead of conformal intervals",
            name,
            df["unique_id"].nunique() - len(backtest_ok),
        )
        parts.append(gaussian_band(point[~long_fc], df[~long_rows], quantiles))
    return pd.concat(parts, ignore_index=True)


def _at_mean(df: pd.DataFrame, horizon: int, quantiles) -> pd.DataFrame:
    """Each series' training mean over the `horizon` days after its last day, with a Gaussian band."""
    by = df.groupby("unique_id")
    last, mean = by["ds"].max(), by["y"].mean()
    point = pd.DataFrame(
        {
            "unique_id": np.repeat(last.index, horizon),
            "ds": (
                np.repeat(last.to_numpy(), horizon) + np.tile(pd.to_timedelta(np.arange(1, horizon + 1), unit="D"), len(last))
            ),
            "mean": np.repeat(mean.to_numpy(), horizon),
        }
    )
    return gaussian_band(point, df, quantiles)


def _statsforecast(df, name, horizon, quantiles, season_length, n_jobs) -> pd.DataFrame:
    peer = statistical.MODELS[name]
    model, min_days = peer.make(season_length), peer.min_days(season_length)
    sf = StatsForecast(models=[model], freq="D", n_jobs=statistical.jobs(name, n_jobs))
    lengths = df.groupby("unique_id").size()
    if (lengths < min_days).any():  # a product launched lately: its mean, as the selection's peers forecast it
        young = df["unique_id"].isin(lengths.index[lengths < min_days])
        log.info(
            "%s: %d series shorter than %d days are forecast at their mean with Gaussian intervals",
            name,
            int((lengths < min_days).sum()),
            min_days,
        )
        parts = [_at_mean(df[young], horizon, quantiles)]
        if not young.all():
            parts.append(_statsforecast(df[~young], name, horizon, quantiles, season_length, n_jobs))
        return finish(pd.concat(parts, ignore_index=True), name, quantiles)

    if peer.native_intervals:
        return finish(_native(sf, df, model.alias, horizon, quantiles), name, quantiles)

    errors = statistical.cross_validation(sf, model.alias, horizon)
    out = conformal_or_gaussian(name, df, _point(sf, df, model.alias, horizon), errors, min_days, horizon, quantiles)
    return finish(out, name, quantiles)


def forecast_global(
    model: type[gbm.Regressor],
    train: pd.DataFrame,
    horizon: int,
    quantiles: list[float],
    seed: int = 0,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """A global mlforecast regressor (`model`: LightGBM or the linear one) on the target alone, as a user's
    own script would fit it: forecast `horizon` days past each series' last training day, with the
    statsforecast peers' symmetric pooled conformal bands: [unique_id, ds, mean, q...].

    train is the zero-filled daily panel; columns other than unique_id, ds and y are ignored.
    """
    name = model.kind
    check_request(horizon, quantiles)
    missing = [c for c in ("unique_id", "ds", "y") if c not in train.columns]
    if missing:
        raise ValueError(f"train lacks columns {missing}; expected the daily panel [unique_id, ds, y]")
    df = train[["unique_id", "ds", "y"]].sort_values(["unique_id", "ds"], ignore_index=True)
    lengths = df.groupby("unique_id").size()
    if lengths.max() < gbm.FEATURE_DAYS:
        raise ValueError(
            f"peer {name} needs at least one series with >= {gbm.FEATURE_DAYS} training days (lag 28 and "
            f"the 28-day mean of lag 1 leave nothing to train on otherwise); the longest has {lengths.max()}"
        )

    with warnings.catch_warnings():
        # LightGBM's sklearn wrapper warns about feature names on recursive predict; harmless.
        warnings.filterwarnings("ignore", message=".*feature names.*")
        raw = model.fit_mlforecast(df, seed, n_jobs).predict(h=horizon)
        point = pd.DataFrame(
            {
                "unique_id": raw["unique_id"].to_numpy(),
                "ds": raw["ds"].to_numpy(),
                "mean": raw[model.column].to_numpy(dtype=float),
            }
        )
        errors = model.cross_validation(horizon, seed, n_jobs)
        out = conformal_or_gaussian(name, df, point, errors, gbm.FEATURE_DAYS, horizon, quantiles)
    out = finish(out, name, quantiles)
    if not np.isfinite(out["mean"]).all():
        raise RuntimeError(f"peer {name} produced non-finite forecasts")
    return out


def forecast_lightgbm(train: pd.DataFrame, horizon: int, quantiles: list[float], seed: int = 0, n_jobs: int = 1) -> pd.DataFrame:
    """`forecast_global` with LightGBM: what a user's own mlforecast + LightGBM script would give."""
    return forecast_global(gbm.LightGBM, train, horizon, quantiles, seed, n_jobs)


class Peer(Protocol):
    def __call__(
        self, df: pd.DataFrame, horizon: int, quantiles: list[float], season_length: int, n_jobs: int, seed: int
    ) -> pd.DataFrame: ...


def _statistical_peer(name: str) -> Peer:
    return lambda df, horizon, quantiles, season_length, n_jobs, seed: _statsforecast(
        df, name, horizon, quantiles, season_length, n_jobs
    )


PEERS: dict[str, Peer] = {
    **{name: _statistical_peer(name) for name in statistical.MODELS},
    "lightgbm": lambda df, horizon, quantiles, season_length, n_jobs, seed: forecast_lightgbm(
        df, horizon, quantiles, seed, n_jobs
    ),
    "linear": lambda df, horizon, quantiles, season_length, n_jobs, seed: forecast_global(
        linear.Linear, df, horizon, quantiles, seed, n_jobs
    ),
}
DEFAULT_PEERS = tuple(statistical.MODELS)  # what the pipeline's evaluate step runs: statsforecast only
BENCH_PEERS = tuple(PEERS)  # plus the mlforecast peers: LightGBM and the linear regression


def forecast_peers(
    train: pd.DataFrame,
    horizon: int,
    quantiles: list[float],
    season_length: int = 7,
    models: Sequence[str] = DEFAULT_PEERS,
    n_jobs: int = 1,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Forecast `horizon` days past each series' last training day with each peer in `models` (any of
    BENCH_PEERS; only "lightgbm" uses `seed`)."""
    unknown = [m for m in models if m not in PEERS]
    if unknown:
        raise ValueError(f"unknown peers {unknown}; choose from {list(BENCH_PEERS)}")
    check_request(horizon, quantiles)
    # Only the target: statsforecast and mlforecast would treat any extra column as a regressor.
    df = train[["unique_id", "ds", "y"]].sort_values(["unique_id", "ds"], ignore_index=True)
    return {name: PEERS[name](df, horizon, quantiles, season_length, n_jobs, seed) for name in models}
