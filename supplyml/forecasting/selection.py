"""Choose what to serve on validation origins before the cutoff, never after it.

Every candidate (the tuned network, LightGBM, the statistical models) is fitted once on the days
before the first validation origin, then conditioned on the history up to each later origin
(`selection.origins`, `selection.step_days` apart, the last one a horizon before the cutoff) and
scored on the horizon after it. Singles and equal-weight combinations of every 2 to
`selection.max_members` singles (combinations usually win: M4, M5) compete on WRMSSE and WSPL, each
relative to the best single. The chosen
combination's validation forecasts then calibrate its daily quantiles and its lead-time + review
totals (`calibration`), and its members are refitted on every day before the cutoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from supplyml.config import Config, ConfigError, ModelConfig
from supplyml.data import DataError
from supplyml.forecasting import calibration as cal
from supplyml.forecasting import metrics
from supplyml.forecasting.base import CANDIDATES, LEVEL_GRID, Calibration, Forecaster, candidate_classes, daily_history
from supplyml.forecasting.combination import Combination

log = logging.getLogger(__name__)


def builders(cfg: Config, params: ModelConfig, names: list[str]) -> dict[str, Callable[[pd.DataFrame], Forecaster]]:
    """How each candidate in `names` is fitted on a panel; only their families are imported."""
    classes = candidate_classes(names)
    if unknown := [n for n in names if n not in classes]:
        raise ValueError(f"selection.candidates has unknown names {unknown}; choose from {sorted(CANDIDATES)}")
    return {name: cls.candidate(name, cfg, params) for name, cls in classes.items()}


def validation_origins(end: pd.Timestamp, cfg: Config) -> list[pd.Timestamp]:
    h, k, step = cfg.features.horizon, cfg.selection.origins, cfg.selection.step_days
    last = end - pd.Timedelta(days=h - 1)
    return [last - pd.Timedelta(days=step * (k - 1 - i)) for i in range(k)]


@dataclass
class Window:
    """One validation origin: the scored series, their demand before it as the scaled metrics read it,
    their actuals, and each candidate's forecast. The history frame is cut from the panel only where a
    model is re-anchored on it, one window at a time: five copies of a 32k-series panel would be the
    largest thing selection holds."""

    origin: pd.Timestamp
    ids: list[str]
    hist: np.ndarray  # (n, days before the origin): `metrics.history_matrix`
    test: pd.DataFrame
    actual: np.ndarray  # (n, h)
    forecasts: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> mean (n, h), float32 quantiles (n, h, FINE)

    def history(self, panel: pd.DataFrame) -> pd.DataFrame:
        return _cut(panel, (panel["ds"] < self.origin) & panel["unique_id"].isin(self.ids))


def _cut(panel: pd.DataFrame, rows: pd.Series) -> pd.DataFrame:
    """The rows of a panel in `daily_history`'s form as a history models share: the mask's fresh copy keeps
    its order and columns, renumbered from 0 in place (`reset_index` would copy it once more). Each model
    anchored on it checks the order and keeps the frame as it is."""
    cut = panel[rows]
    cut.index = pd.RangeIndex(len(cut))
    return cut


def candidates(cfg: Config, n_series: int, names: list[str] | None = None) -> list[str]:
    """`names` (default: `selection.candidates`) that a panel of `n_series` can afford: AutoETS and AutoARIMA
    refit at every origin and their cost grows with series x days, so each sits out above its
    `selection.max_series`. The evaluate step's peers follow the same rule."""
    names = list(cfg.selection.candidates if names is None else names)
    capped = list(cfg.selection.max_series)
    if unknown := sorted(set(capped) - set(candidate_classes(capped))):  # a misspelt cap would cap nothing
        raise ConfigError(f"selection.max_series has unknown names {unknown}; choose from {sorted(CANDIDATES)}")
    for name, most in cfg.selection.max_series.items():
        if name in names and n_series > most:
            log.info(
                "%s left out: %d series > its selection.max_series (%d); its cost grows with series x days",
                name,
                n_series,
                most,
            )
            names.remove(name)
    return names


def _score(window: Window, mean: np.ndarray, q: np.ndarray, cfg: Config) -> dict[str, float]:
    """WRMSSE and WSPL at the evaluation quantiles, as `evaluate_forecasts` scores them."""
    levels = cfg.evaluation.quantiles
    idx = [int(np.argmin(np.abs(cal.FINE - lv))) for lv in levels]
    hist, actual = window.hist, window.actual
    return {"wrmsse": metrics.wrmsse(actual, mean, hist), "wspl": metrics.wspl(actual, q[..., idx], levels, hist)}


def _blend(window: Window, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    mean = sum(w * window.forecasts[n][0] for n, w in weights.items())
    q = sum(w * window.forecasts[n][1].astype(float) for n, w in weights.items())
    assert isinstance(mean, np.ndarray) and isinstance(q, np.ndarray), "no weights"
    return mean, q


def select(panel: pd.DataFrame, cfg: Config, params: ModelConfig) -> tuple[Combination, dict]:
    """The combination (weights and calibration) to serve, fitted on all of `panel`, and the evidence."""
    t0 = time.perf_counter()
    h = cfg.features.horizon
    origins = validation_origins(panel["ds"].max(), cfg)
    first = panel.groupby("unique_id")["ds"].min()
    n_series = panel["unique_id"].nunique()
    if not (names := candidates(cfg, n_series)):
        capped = ", ".join(f"selection.max_series.{n}={cfg.selection.max_series[n]}" for n in cfg.selection.candidates)
        raise DataError(
            f"every candidate in selection.candidates sits out of a panel of {n_series} series ({capped}); "
            "raise its cap with --set, or name other candidates"
        )
    make = builders(cfg, params, names)
    panel = daily_history(panel)  # one sorted copy; every candidate and window shares its cuts
    train = _cut(panel, panel["ds"] < origins[0])
    fitted = {}
    for name in names:
        try:
            fitted[name] = make[name](train)
        except ValueError as e:  # e.g. series too short for a statistical model
            log.warning("candidate %s left out: %s", name, e)
    if not fitted:
        raise DataError(
            f"no candidate model could be fitted on the {train['ds'].nunique()} days before the first "
            f"validation origin {origins[0].date()}: lower selection.origins or features.horizon"
        )
    windows = []
    for origin in origins:
        ids = sorted(first.index[first <= origin - pd.Timedelta(days=h)])
        test = panel[(panel["ds"] >= origin) & (panel["ds"] < origin + pd.Timedelta(days=h)) & panel["unique_id"].isin(ids)]
        actual = test.pivot(index="unique_id", columns="ds", values="y").reindex(index=ids).to_numpy(dtype=float)
        history = _cut(panel, (panel["ds"] < origin) & panel["unique_id"].isin(ids))
        window = Window(origin, ids, metrics.history_matrix(history, pd.Index(ids)), test, actual, {})
        for name, model in fitted.items():
            mean, q = model.with_history(history).quantiles(ids, h, cal.FINE, future=test)
            # float32: half the memory of selection's largest arrays. Scores move by ~1e-8 relative; a quantile
            # within float32 rounding of a whole number could flip a tie in the level map.
            window.forecasts[name] = mean, q.astype(np.float32)
        windows.append(window)
        del history

    scored = [w for w in windows if _scorable(w, cfg)]
    if scored:
        chosen, scores = _choose(scored, fitted, cfg)
    else:  # e.g. one constant series: WRMSSE has no scale, so there is nothing to rank on
        chosen, scores = next(iter(fitted)), {}
        log.warning(
            "no validation origin has a series with a nonzero naive scale and recent sales: chose %s, the "
            "first candidate of selection.candidates that fitted",
            chosen,
        )
    weights = {n: 1.0 / len(chosen.split(" + ")) for n in chosen.split(" + ")}

    calib = calibrate(windows, panel, weights, fitted, cfg)
    members = {n: make[n](panel) for n in weights}
    model = Combination(members, weights, panel)
    model.calibration = calib
    evidence = {
        "origins": [str(o.date()) for o in origins],
        "candidates": names,
        "peers": [n for n in fitted if not CANDIDATES[n].tuned],
        "chosen": chosen,
        "weights": weights,
        "validation": scores,
        "calibration": calib.scores,
        "seconds": time.perf_counter() - t0,
    }
    return model, evidence


def _scorable(window: Window, cfg: Config) -> bool:
    """Whether WRMSSE is defined at this origin: some series with a nonzero naive scale and sales in its
    weight window (M5 leaves the others out)."""
    try:
        _score(window, window.actual, np.repeat(window.actual[..., None], len(cal.FINE), axis=-1), cfg)
    except ValueError as e:
        log.warning("validation origin %s not scored: %s", window.origin.date(), e)
        return False
    return True


def _choose(windows: list[Window], fitted: dict[str, Forecaster], cfg: Config) -> tuple[str, dict]:
    """Singles and equal-weight combinations scored on the validation origins; the lowest WRMSSE + WSPL,
    each relative to the best single's."""
    scores = {n: _mean_scores([_score(w, *w.forecasts[n], cfg) for w in windows]) for n in fitted}
    ranked = sorted(scores, key=lambda n: scores[n]["wrmsse"])
    options = {n: {n: 1.0} for n in ranked}
    for k in range(2, min(cfg.selection.max_members, len(ranked)) + 1):
        for members in combinations(ranked, k):
            options[" + ".join(members)] = {n: 1.0 / k for n in members}
    for label, weights in options.items():
        if label not in scores:
            scores[label] = _mean_scores([_score(w, *_blend(w, weights), cfg) for w in windows])
    # Relative to the best single's; a perfect forecast (a constant series) scores 0, so floor the divisor.
    best_w, best_s = (max(min(scores[n][m] for n in ranked), 1e-12) for m in ("wrmsse", "wspl"))
    chosen = min(options, key=lambda o: scores[o]["wrmsse"] / best_w + scores[o]["wspl"] / best_s)
    top = pd.DataFrame(scores).T.assign(objective=lambda t: t["wrmsse"] / best_w + t["wspl"] / best_s)
    log.info(
        "validation on %d origins from %s (singles and the 5 best combinations):\n%s\nchosen: %s",
        len(windows),
        windows[0].origin.date(),
        pd.concat([top.loc[ranked], top.drop(index=ranked).nsmallest(5, "objective")]).round(4).to_string(),
        chosen,
    )
    return chosen, scores


def _mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def calibrate(
    windows: list[Window], panel: pd.DataFrame, weights: dict[str, float], fitted: dict[str, Forecaster], cfg: Config
) -> Calibration:
    """Daily level map from the validation forecasts; copula correlation and total level map from
    the combination's sample paths over lead time + review period at each validation origin."""
    inv, sel = cfg.inventory, cfg.selection
    days = inv.lead_time + inv.review_period
    y = np.concatenate([w.actual.ravel() for w in windows])
    q = np.concatenate([_blend(w, weights)[1].reshape(-1, len(cal.FINE)) for w in windows])
    daily = cal.level_map(y, q)
    combo: Forecaster = Combination({n: fitted[n] for n in weights}, weights, windows[0].history(panel))
    combo.calibration = Calibration(daily=daily)
    q_days: list[np.ndarray] = []
    window_totals: list[np.ndarray] = []
    window_scales: list[np.ndarray] = []
    for w in windows:
        history = w.history(panel)
        combo = combo.with_history(history)
        q_days.append(combo.quantiles(w.ids, days, combo.calibration.daily_levels(LEVEL_GRID), future=w.test)[1])
        window_totals.append(w.actual[:, :days].sum(1))
        window_scales.append(np.maximum(history.groupby("unique_id")["y"].mean().reindex(w.ids).to_numpy(), 1e-3))
    totals, scale = np.concatenate(window_totals), np.concatenate(window_scales)
    rho, losses = cal.choose_rho(totals, q_days, scale, sel.path_correlations, inv.num_sample_paths, cfg.seed)
    tq = cal.total_quantiles(q_days, rho, inv.num_sample_paths, cfg.seed)
    total = cal.level_map(totals, tq)
    calibrated = Calibration(rho=rho, daily=daily, total=total, days=days)
    # Validation coverage before calibration, for the record.
    scores: dict[str, Any] = {
        "daily_coverage_50_raw": _cov(y, q, 0.25, 0.75),
        "daily_coverage_95_raw": _cov(y, q, 0.025, 0.975),
        "total_coverage_95_raw": _cov(totals, tq, 0.025, 0.975),
        "rho_losses": losses,
        "order_level": calibrated.total_level(inv.service_level),
    }
    calibrated.scores = scores
    log.info(
        "calibration: rho %.2f, order level %.3f for a %.0f%% target; raw validation coverage %s",
        rho,
        scores["order_level"],
        100 * inv.service_level,
        {k: round(v, 3) for k, v in scores.items() if k.endswith("raw")},
    )
    return calibrated


def _cov(actual: np.ndarray, q: np.ndarray, lo: float, hi: float) -> float:
    i, j = (int(np.argmin(np.abs(cal.FINE - v))) for v in (lo, hi))
    return cal.coverage(actual, q[:, i], q[:, j])
