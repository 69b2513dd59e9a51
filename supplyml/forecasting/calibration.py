"""Calibration on validation origins: of daily quantiles, and of the totals that order decisions read.

Quantile recalibration (Kuleshov et al., 2018): for each nominal level the frequency with which the
actuals fell at or below (upper levels) or below (lower levels) the forecast quantile is measured on
validation days; inverting that curve gives the level to read for a wanted coverage. The same is done
for totals over lead time + review period, from the model's own sample paths, after the copula
correlation of those paths is chosen by the scaled pinball loss of the totals.
"""

from __future__ import annotations

import logging

import numpy as np

from supplyml.config import M5_QUANTILES
from supplyml.forecasting.base import LEVEL_GRID, equicorrelated, quantile_paths

log = logging.getLogger(__name__)
# Levels forecasts are read at during selection and calibration: the sampling grid, M5's levels, and
# a little further into the tails so that a too-narrow model can be widened.
FINE = np.unique(np.round([0.001, 0.0025, *LEVEL_GRID, *M5_QUANTILES, 0.9975, 0.999], 4))
TOTAL_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
CHUNK = 256  # series per block of sample paths: 500 paths x 10 days of 256 series are ~10 MB an array


def level_map(actual: np.ndarray, q: np.ndarray, levels: np.ndarray = FINE) -> tuple[list[float], list[float]]:
    """(nominal, calibrated) levels from actuals (N,) and their forecast quantiles (N, len(levels)).

    Lower levels count actuals strictly below the quantile, upper levels at or below it, so that the
    central interval [q_lo, q_hi], bounds included, covers its nominal share of actuals.
    """
    below = (actual[:, None] < q).mean(0)
    at_or_below = (actual[:, None] <= q).mean(0)
    freq = np.where(levels < 0.5, below, np.where(levels > 0.5, at_or_below, (below + at_or_below) / 2))
    # Monotone and strictly increasing, so the curve can be inverted by interpolation.
    freq = np.maximum.accumulate(freq) + np.arange(len(levels)) * 1e-9
    return [float(v) for v in levels], [float(v) for v in np.interp(levels, freq, levels)]


def coverage(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    return float(np.mean((lo <= actual) & (actual <= hi)))


def choose_rho(
    totals: np.ndarray, q_days: list[np.ndarray], scale: np.ndarray, candidates, n_samples: int, seed: int
) -> tuple[float, dict[float, float]]:
    """The copula correlation whose paths best forecast the actual totals (n,) of each window.

    q_days: per window, daily calibrated quantiles (n_w, days, len(LEVEL_GRID)); totals and scale
    (mean daily demand, for a scale-free loss) are concatenated over windows.
    """
    losses = {}
    for rho in candidates:
        pred = np.quantile(path_totals(q_days, rho, n_samples, seed), TOTAL_LEVELS, axis=1)
        diff = totals[None] - pred
        pin = np.maximum(np.array(TOTAL_LEVELS)[:, None] * diff, (np.array(TOTAL_LEVELS)[:, None] - 1) * diff)
        losses[float(rho)] = float(np.mean(pin / scale[None]))
    return min(losses, key=losses.__getitem__), losses


def path_totals(q_days: list[np.ndarray], rho: float, n_samples: int, seed: int) -> np.ndarray:
    """(series of all windows, n_samples) totals of copula paths drawn from each window's daily quantiles.

    `copula_paths`'s draws, its paths taken CHUNK series at a time so that memory stays flat in the number
    of series: the generator fills arrays in order, so drawing the series' normals block by block gives
    the numbers one draw for all of them would."""
    rng = np.random.default_rng(seed)
    totals = []
    for q in q_days:
        n, h, _ = q.shape
        common = rng.standard_normal((n, n_samples, 1))
        for i in range(0, n, CHUNK):
            own = rng.standard_normal((len(q[i : i + CHUNK]), n_samples, h))
            totals.append(quantile_paths(q[i : i + CHUNK], equicorrelated(common[i : i + CHUNK], own, rho)).sum(2))
    return np.concatenate(totals)


def total_quantiles(q_days: list[np.ndarray], rho: float, n_samples: int, seed: int, levels: np.ndarray = FINE) -> np.ndarray:
    return np.quantile(path_totals(q_days, rho, n_samples, seed), levels, axis=1).T
