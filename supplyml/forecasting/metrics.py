"""M5-style forecast metrics: RMSSE/WRMSSE for the mean, scaled pinball loss (WSPL) for quantiles.

Array functions take the time axis last, so one series is a 1-D array and a panel is a 2-D array
(series × days). Panels of unequal length are NaN-padded: training histories at the start, so each
row ends on its series' last training day; test and forecast arrays at the end, so each row starts
on the first forecast day. NaNs are ignored.

Zero-scale rule: a series whose naive scale is zero (constant history) or undefined (fewer than
season + 1 training days) has no meaningful scaled error. Its per-series RMSSE, MASE and SPL are NaN,
and the weighted aggregates leave it out and renormalise the remaining weights. We drop rather than
floor the scale because a floored scale turns any error on such a series into a number that would
swamp every other series. `evaluate_forecasts` reports how many series were left out.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd


def quantile_col(q: float) -> str:
    # One naming rule for every producer and consumer of quantile columns: 0.005 -> "q0.005".
    return f"q{q:g}"


def naive_scale(y_train: np.ndarray, season: int = 1, power: int = 2) -> np.ndarray:
    """Mean |y_t - y_{t-season}|**power over the training history; NaN where zero or undefined."""
    y = np.asarray(y_train, dtype=float)
    if season < 1:
        raise ValueError(f"season must be >= 1, got {season}")
    diffs = np.abs(y[..., season:] - y[..., :-season]) ** power
    with warnings.catch_warnings():  # all-NaN rows (too short) are expected and become NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        scale = np.nanmean(diffs, axis=-1) if diffs.shape[-1] else np.full(y.shape[:-1], np.nan)
    return np.where(scale > 0, scale, np.nan)


def _nanmean_time(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=-1)


def _scalar_or_array(x: np.ndarray):
    return float(x) if np.ndim(x) == 0 else x


def rmsse(y_true, y_pred, y_train, season: int = 1):
    err = (np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float)) ** 2
    return _scalar_or_array(np.sqrt(_nanmean_time(err) / naive_scale(y_train, season, power=2)))


def mase(y_true, y_pred, y_train, season: int = 1):
    err = np.abs(np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float))
    return _scalar_or_array(_nanmean_time(err) / naive_scale(y_train, season, power=1))


def pinball_loss(y_true, y_pred_q, q: float):
    """Mean pinball loss over the horizon: under-forecasts cost q per unit, over-forecasts 1 - q."""
    diff = np.asarray(y_true, dtype=float) - np.asarray(y_pred_q, dtype=float)
    return _scalar_or_array(_nanmean_time(np.maximum(q * diff, (q - 1) * diff)))


def scaled_pinball_loss(y_true, y_quantiles, quantiles, y_train, season: int = 1):
    """M5 SPL per series, averaged over quantiles. y_quantiles[..., t, j] forecasts quantiles[j]."""
    yq = np.asarray(y_quantiles, dtype=float)
    if yq.shape[-1] != len(quantiles):
        raise ValueError(f"y_quantiles has {yq.shape[-1]} quantile columns, quantiles has {len(quantiles)}")
    losses = np.stack([pinball_loss(y_true, yq[..., j], q) for j, q in enumerate(quantiles)], axis=-1)
    return _scalar_or_array(losses.mean(axis=-1) / naive_scale(y_train, season, power=1))


def series_weights(y_train, window: int = 28) -> np.ndarray:
    """Share of units sold in each series' last `window` training days (rows right-aligned)."""
    if window < 1:
        raise ValueError(f"weight window must be >= 1, got {window}")
    units = np.nansum(np.atleast_2d(np.asarray(y_train, dtype=float))[:, -window:], axis=-1)
    total = units.sum()
    if total <= 0:
        raise ValueError(f"no units sold in the last {window} training days of any series; cannot weight")
    return units / total


def _weighted(per_series: np.ndarray, weights: np.ndarray) -> float:
    keep = np.isfinite(per_series)
    w = weights[keep]
    if w.sum() <= 0:
        raise ValueError("no series has both a nonzero naive scale and units in the weight window")
    return float(np.sum(per_series[keep] * w) / w.sum())


def wrmsse(y_true, y_pred, y_train, season: int = 1, window: int = 28) -> float:
    per_series = np.atleast_1d(rmsse(y_true, y_pred, y_train, season))
    return _weighted(per_series, series_weights(y_train, window))


def wspl(y_true, y_quantiles, quantiles, y_train, season: int = 1, window: int = 28) -> float:
    per_series = np.atleast_1d(scaled_pinball_loss(y_true, y_quantiles, quantiles, y_train, season))
    return _weighted(per_series, series_weights(y_train, window))


def coverage(y_true, lower, upper) -> float:
    """Fraction of observed points inside [lower, upper], pooled over series and days."""
    y, lo, hi = (np.asarray(a, dtype=float) for a in (y_true, lower, upper))
    seen = ~np.isnan(y)
    return float(np.mean((lo[seen] <= y[seen]) & (y[seen] <= hi[seen])))


def bias(y_true, y_pred) -> float:
    """(total forecast - total actual) / total actual: +0.1 means 10% over-forecast in volume."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    seen = ~np.isnan(y)
    total = y[seen].sum()
    if total <= 0:
        raise ValueError("test period has no demand; bias relative to actual volume is undefined")
    return float((p[seen].sum() - total) / total)


def _to_matrix(frame: pd.DataFrame, ids: pd.Index, cols: list[str], right_align: bool) -> dict[str, np.ndarray]:
    # Rows in panel order; consecutive rows of a series are consecutive days (dense daily panel).
    frame = frame.sort_values(["unique_id", "ds"])
    rows = ids.get_indexer(frame["unique_id"])
    pos = frame.groupby("unique_id", sort=False).cumcount(ascending=not right_align).to_numpy()
    width = int(pos.max()) + 1
    col = width - 1 - pos if right_align else pos
    out = {}
    for c in cols:
        m = np.full((len(ids), width), np.nan)
        m[rows, col] = frame[c].to_numpy(dtype=float)
        out[c] = m
    return out


def evaluate_forecasts(
    train: pd.DataFrame,
    test: pd.DataFrame,
    forecast: pd.DataFrame,
    quantiles: list[float],
    weight_window: int = 28,
    season: int = 1,
) -> dict[str, float]:
    """Score a forecast frame [unique_id, ds, mean, q...] against the test rows (`Actuals.evaluate`)."""
    return Actuals(train, test).evaluate(forecast, quantiles, weight_window, season)


class Actuals:
    """What every forecast scored at one origin is scored against: the test rows, and the training demand
    of their series as the scaled metrics read it (`history_matrix`). Built once per origin: the history
    matrix sorts and indexes every training row, which done per forecast was the backtest's largest
    cost that grew faster than the panel."""

    def __init__(self, train: pd.DataFrame, test: pd.DataFrame):
        if test.empty:
            raise ValueError("test frame is empty; nothing to evaluate")
        self.test = test[["unique_id", "ds", "y"]]
        self.ids = pd.Index(sorted(self.test["unique_id"].unique()))
        unknown = self.ids.difference(pd.Index(train["unique_id"].unique()))
        if len(unknown):
            raise ValueError(f"{len(unknown)} test series have no training history, e.g. {list(unknown[:5])}")
        self.hist = history_matrix(train, self.ids)

    def evaluate(
        self, forecast: pd.DataFrame, quantiles: list[float], weight_window: int = 28, season: int = 1
    ) -> dict[str, float]:
        """wrmsse, mase (unweighted mean over scored series), wspl, bias, coverage_50 and coverage_95 (only
        when the 0.25/0.75 and 0.025/0.975 quantiles are present), n_series and n_unscored (series left
        out of the scaled metrics by the zero-scale rule)."""
        qcols = [quantile_col(q) for q in quantiles]
        missing = [c for c in ["unique_id", "ds", "mean", *qcols] if c not in forecast.columns]
        if missing:
            raise ValueError(f"forecast frame lacks columns {missing}")
        joined = self._join(forecast, qcols)
        unforecast = joined[joined[["mean", *qcols]].isna().any(axis=1)]
        if len(unforecast):
            first = unforecast.iloc[0]
            raise ValueError(
                f"{len(unforecast)} test rows have no forecast (mean or a quantile missing), "
                f"e.g. unique_id={first['unique_id']!r} ds={first['ds']}"
            )
        hist, m = self.hist, _to_matrix(joined, self.ids, ["y", "mean", *qcols], right_align=False)
        y_true, y_mean = m["y"], m["mean"]
        y_q = np.stack([m[c] for c in qcols], axis=-1)

        per_series = np.asarray(rmsse(y_true, y_mean, hist, season))
        result = {
            "wrmsse": wrmsse(y_true, y_mean, hist, season, weight_window),
            "mase": float(np.nanmean(mase(y_true, y_mean, hist, season))),
            "wspl": wspl(y_true, y_q, quantiles, hist, season, weight_window),
            "bias": bias(y_true, y_mean),
        }
        for name, (lo, hi) in {"coverage_50": (0.25, 0.75), "coverage_95": (0.025, 0.975)}.items():
            lo_q, hi_q = (next((q for q in quantiles if np.isclose(q, b)), None) for b in (lo, hi))
            if lo_q is not None and hi_q is not None:
                result[name] = coverage(y_true, m[quantile_col(lo_q)], m[quantile_col(hi_q)])
        result["n_series"] = float(len(self.ids))
        result["n_unscored"] = float(np.sum(~np.isfinite(per_series)))
        return result

    def series_scores(self, forecast: pd.DataFrame, weight_window: int = 28, season: int = 1) -> pd.DataFrame:
        """Per test series: its WRMSSE weight (the weights of the scored series sum to 1, as in `wrmsse`), its
        RMSSE (NaN by the zero-scale rule) and the share of its days inside the 95% interval (NaN without the
        0.025 / 0.975 quantiles): the units a paired comparison of two forecasters is made of."""
        qcols = [c for c in (quantile_col(0.025), quantile_col(0.975)) if c in forecast]
        hist, m = self.hist, _to_matrix(self._join(forecast, qcols), self.ids, ["y", "mean", *qcols], right_align=False)
        per_series = np.atleast_1d(rmsse(m["y"], m["mean"], hist, season))
        weights = np.where(np.isfinite(per_series), series_weights(hist, weight_window), 0.0)
        if weights.sum() <= 0:
            raise ValueError("no series has both a nonzero naive scale and units in the weight window")
        out = pd.DataFrame({"weight": weights / weights.sum(), "rmsse": per_series}, index=self.ids)
        if len(qcols) == 2:
            seen = ~np.isnan(m["y"])
            inside = (m[qcols[0]] <= m["y"]) & (m["y"] <= m[qcols[1]]) & seen
            out["coverage_95"] = inside.sum(axis=1) / np.maximum(seen.sum(axis=1), 1)
        else:
            out["coverage_95"] = np.nan
        out.index.name = "unique_id"
        return out

    def _join(self, forecast: pd.DataFrame, qcols: list[str]) -> pd.DataFrame:
        return self.test.merge(forecast[["unique_id", "ds", "mean", *qcols]], on=["unique_id", "ds"], how="left")


def history_matrix(train: pd.DataFrame, ids: pd.Index) -> np.ndarray:
    """The training demand of `ids` as rows (len(ids), days), right-aligned on each series' last day: the
    `y_train` of the scaled metrics."""
    return _to_matrix(train[train["unique_id"].isin(ids)], ids, ["y"], right_align=True)["y"]
