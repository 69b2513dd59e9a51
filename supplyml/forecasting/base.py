"""The model-family protocol: what the lifecycle asks of any forecaster, and the parts all share.

A family implements `fit` (a classmethod), `quantiles` (mean and quantiles per series and day at any
levels), and `_save_state` / `_load_state`. From those this base gives every model the same surface:
`predict` (a frame of mean and quantiles), `sample` (joint daily sample paths), `order_level` (the
level at which to read totals for an order-up-to decision), `with_history`, `save` and `load`.

Calibration learnt on validation origins (`supplyml.forecasting.calibration`) travels with the model:
`predict` and `sample` read daily quantiles at calibrated levels, `sample` ties days with a Gaussian
copula of the calibrated correlation, and `order_level` maps a target service level to the level of
the sampled lead-time-plus-review totals that met it on validation data.
"""

from __future__ import annotations

import copy
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
from scipy import special
from scipy.stats import norm

from supplyml.columns import DAILY_COLUMNS, FLAGS
from supplyml.forecasting.metrics import quantile_col

if TYPE_CHECKING:
    from supplyml.config import Config, ModelConfig

# The daily quantile function behind sample paths: dense in the tails, where order-up-to levels read.
LEVEL_GRID = np.array([0.005, 0.01, 0.025, *np.round(np.arange(0.05, 0.951, 0.05), 2), 0.975, 0.99, 0.995])
# Filled as each family's module is imported: kind (what a saved model names) -> class, and selection
# candidate name -> the class that fits it.
FAMILIES: dict[str, type[Forecaster]] = {}
CANDIDATES: dict[str, type[Forecaster]] = {}
# The family modules, cheapest import first: a step imports them in turn only until it has what it needs,
# since the networks bring torch and Lightning (about 2 s of every process that imports them).
FAMILY_MODULES = ("statistical", "gbm", "linear", "combination", "networks")
# The candidates that train with the tuned hyperparameters (`forecasting.search`): the network.
TUNED = ("network",)


class UnknownSeriesError(KeyError):
    def __init__(self, missing: list[str]):
        super().__init__(missing)
        self.missing = missing

    def __str__(self) -> str:
        return f"unknown series: {', '.join(self.missing[:10])}"


def _interp_map(levels: np.ndarray, level_map: tuple[list[float], list[float]] | None) -> np.ndarray:
    return np.asarray(levels, dtype=float) if level_map is None else np.interp(levels, *level_map)


@dataclass
class Calibration:
    """Level maps learnt on validation origins; the identity until calibrated.

    daily: (nominal levels, the levels whose quantiles met them on validation days).
    total: the same for totals over lead time + review period (`days`), read by order decisions.
    """

    rho: float = 0.0  # copula correlation between a path's days
    daily: tuple[list[float], list[float]] | None = None
    total: tuple[list[float], list[float]] | None = None
    days: int | None = None  # the window the total map was learnt on
    scores: dict = field(default_factory=dict)  # validation evidence, for the record

    def daily_levels(self, levels) -> np.ndarray:
        return _interp_map(levels, self.daily)

    def total_level(self, level: float) -> float:
        return float(_interp_map(np.array([level]), self.total)[0])


def daily_history(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame`'s daily columns sorted by series and day, as a model holds its history. A frame already in
    that form is returned as it is: models anchored on one history share it (selection's candidates on a
    32k-series panel would otherwise hold a copy each, ~1.5 GB apiece)."""
    columns = [c for c in DAILY_COLUMNS if c in frame]
    if list(frame.columns) == columns and frame.index.equals(pd.RangeIndex(len(frame))) and _by_series_and_day(frame):
        return frame
    return frame[columns].sort_values(["unique_id", "ds"], ignore_index=True)


def _by_series_and_day(frame: pd.DataFrame) -> bool:
    ids = frame["unique_id"]
    if not ids.is_monotonic_increasing or ids.isna().any():  # the cheap test first; sort_values puts nulls last
        return False
    uid, ds = ids.to_numpy(), frame["ds"].to_numpy()
    same = uid[1:] == uid[:-1]
    return bool((ds[1:][same] >= ds[:-1][same]).all())


class Anchored:
    """A history as models hold it (`daily_history`) and what is read from it once: its series, each
    one's position, its last day and, on first use, each series' row range. Models anchored on one
    share it: a combination's members are not re-checked and re-indexed once each (re-anchoring a
    3-member combination on 8,000 series x 700 days took 2.59 s that way, 0.65 s sharing it)."""

    def __init__(self, history: pd.DataFrame):
        self.frame = daily_history(history)
        self.ids = list(pd.unique(self.frame["unique_id"]))
        self.row = {uid: i for i, uid in enumerate(self.ids)}
        # Every forecast's first date derives from it: read once, not per request over the whole history.
        self.last_date = pd.Timestamp(self.frame["ds"].max())
        self._bounds: np.ndarray | None = None

    def bounds(self) -> np.ndarray:
        """Each series' first row, then the end (the frame is sorted by series)."""
        if self._bounds is None:
            ids = self.frame["unique_id"].to_numpy()
            self._bounds = np.r_[0, np.flatnonzero(ids[1:] != ids[:-1]) + 1, len(ids)]
        return self._bounds


class Forecaster(ABC):
    """Probabilistic forecaster of every series in its history (see the module docstring)."""

    kind: ClassVar[str]
    # Days of history a forecast conditions on; None keeps all (local statistical models refit on it).
    history_days: int | None = None
    # The names `selection.candidates` may give this family, and whether it trains with the tuned
    # hyperparameters (the rest are the selection's peers).
    candidates: ClassVar[tuple[str, ...]] = ()
    tuned: ClassVar[bool] = False

    @classmethod
    def candidate(cls, name: str, cfg: Config, params: ModelConfig) -> Callable[[pd.DataFrame], Forecaster]:
        """How selection fits candidate `name` (one of `candidates`) on a panel."""
        raise NotImplementedError(f"{cls.__name__} is not a selection candidate")

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "kind" in cls.__dict__:
            FAMILIES[cls.kind] = cls
        if "candidates" in cls.__dict__:
            if taken := [n for n in cls.candidates if CANDIDATES.get(n, cls) is not cls]:
                raise TypeError(f"{cls.__name__} offers candidate names that another family has: {taken}")
            CANDIDATES.update(dict.fromkeys(cls.candidates, cls))

    def __init__(self, history: pd.DataFrame, calibration: Calibration | None = None):
        self.calibration = calibration or Calibration()
        self._anchor(history)

    # -- history ---------------------------------------------------------------------------------
    def with_history(self, history: pd.DataFrame | Anchored) -> Forecaster:
        """This model conditioned on `history`: forecasts start the day after it ends. A shallow copy,
        so the fitted parameters (and calibration) are shared, not copied; this model is unchanged."""
        model = copy.copy(self)
        model._anchor(history)
        return model

    def _anchor(self, history: pd.DataFrame | Anchored) -> None:
        """Set the history-derived state; families with more of it extend this. Called on a model
        being built (constructor, `with_history`'s copy), never on one already handed out."""
        self.anchored = history if isinstance(history, Anchored) else Anchored(history)

    @property
    def history(self) -> pd.DataFrame:
        return self.anchored.frame

    @property
    def skus(self) -> list[str]:
        return self.anchored.ids

    @property
    def last_date(self) -> pd.Timestamp:
        return self.anchored.last_date

    def check_skus(self, skus: list[str]) -> np.ndarray:
        row = self.anchored.row
        missing = [s for s in skus if s not in row]
        if missing:
            raise UnknownSeriesError(missing)
        return np.array([row[s] for s in skus], dtype=int)

    def history_of(self, skus: list[str]) -> pd.DataFrame:
        """The history rows of `skus`, as a mask over the history would give them (by series, then day),
        sliced from each series' row range: a request for one SKU does not scan a 32k-series panel."""
        rows = np.unique(self.check_skus(skus))
        bounds = self.anchored.bounds()
        starts, lengths = bounds[rows], bounds[rows + 1] - bounds[rows]
        offsets = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        return self.history.iloc[offsets + np.arange(lengths.sum())]

    def forecast_dates(self, horizon: int) -> pd.DatetimeIndex:
        return pd.date_range(self.last_date + pd.Timedelta(days=1), periods=horizon)

    # -- what a family implements ----------------------------------------------------------------
    @abstractmethod
    def quantiles(
        self, skus: list[str], horizon: int, levels, future: pd.DataFrame | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated mean (n, h) and quantiles (n, h, len(levels)), non-negative and non-crossing.

        `future` holds promotion and event flags of the forecast days where the caller knows them.
        """

    @abstractmethod
    def _save_state(self, path: Path) -> dict:
        """Write fitted state under `path`; return JSON-able facts `_load_state` needs."""

    @classmethod
    @abstractmethod
    def _load_state(cls, path: Path, meta: dict, history: pd.DataFrame) -> Forecaster: ...

    # -- shared surface --------------------------------------------------------------------------
    def predict(self, skus: list[str] | None, horizon: int, quantiles, future: pd.DataFrame | None = None) -> pd.DataFrame:
        """Mean and calibrated quantiles per series and day: [unique_id, ds, mean, q...]."""
        skus = list(self.skus if skus is None else skus)
        self.check_skus(skus)
        quantiles = sorted(quantiles)
        mean, q = self.quantiles(skus, horizon, self.calibration.daily_levels(quantiles), future)
        return to_frame(skus, self.forecast_dates(horizon), mean, q, quantiles)

    def sample(
        self, skus: list[str], horizon: int, n_samples: int, seed: int = 0, future: pd.DataFrame | None = None
    ) -> np.ndarray:
        """Joint daily sample paths (len(skus), n_samples, horizon), float32 (every family's; the backtest
        holds many): each day follows its calibrated marginal, and days share a Gaussian-copula factor of
        correlation `calibration.rho`."""
        self.check_skus(skus)
        _, q = self.quantiles(skus, horizon, self.calibration.daily_levels(LEVEL_GRID), future)
        return copula_paths(q, n_samples, self.calibration.rho, np.random.default_rng(seed))

    def order_level(self, service_level: float) -> float:
        """The level of sampled lead-time + review totals that met `service_level` on validation data."""
        return self.calibration.total_level(service_level)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "calibration": asdict(self.calibration), **self._save_state(path)}
        (path / "model.json").write_text(json.dumps(meta, default=float))
        history = self.history
        if self.history_days is not None:
            history = history[history["ds"] > self.last_date - pd.Timedelta(days=self.history_days + 1)]
        history.to_parquet(path / "history.parquet", index=False)


def load(path: str | Path) -> Forecaster:
    """Any saved model, whatever its family."""
    path = Path(path)
    meta = json.loads((path / "model.json").read_text())
    _import_until(lambda: meta["kind"] in FAMILIES)
    if meta["kind"] not in FAMILIES:
        raise ValueError(f"{path}: unknown model family {meta['kind']!r}; known: {sorted(FAMILIES)}")
    model = FAMILIES[meta["kind"]]._load_state(path, meta, pd.read_parquet(path / "history.parquet"))
    cal = meta["calibration"]
    model.calibration = Calibration(**{**cal, **{k: tuple(cal[k]) if cal[k] else None for k in ("daily", "total")}})
    return model


def candidate_classes(names: list[str]) -> dict[str, type[Forecaster]]:
    """Each of `names` that a family offers as a selection candidate -> its class; the families are
    imported only until every name is found (all of them when one is unknown)."""
    _import_until(lambda: set(names) <= CANDIDATES.keys())
    return {n: CANDIDATES[n] for n in names if n in CANDIDATES}


def _import_until(done: Callable[[], bool]) -> None:
    for module in FAMILY_MODULES:
        if done():
            return
        importlib.import_module(f"supplyml.forecasting.{module}")


def to_frame(skus: list[str], dates: pd.DatetimeIndex, mean: np.ndarray, q: np.ndarray, quantiles) -> pd.DataFrame:
    out = {"unique_id": np.repeat(skus, len(dates)), "ds": np.tile(dates, len(skus)), "mean": mean.ravel()}
    for j, level in enumerate(quantiles):
        out[quantile_col(level)] = q[..., j].ravel()
    return pd.DataFrame(out)


def copula_normals(n: int, n_samples: int, h: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """(n, s, h) standard normals, equicorrelated across a path's days: sqrt(rho) common + sqrt(1 - rho) own."""
    common, own = rng.standard_normal((n, n_samples, 1)), rng.standard_normal((n, n_samples, h))
    return equicorrelated(common, own, rho, out=own)


def equicorrelated(common: np.ndarray, own: np.ndarray, rho: float, out: np.ndarray | None = None) -> np.ndarray:
    """sqrt(rho) common + sqrt(1 - rho) own: standard normals whose days correlate by rho. With `out` (`own`
    itself, where nothing reads it again) no temporary the size of all paths is made: 1.3 GB at 32k series."""
    out = np.multiply(own, np.sqrt(1 - rho), out=out)
    out += np.sqrt(rho) * common
    return out


def copula_paths(
    q: np.ndarray, n_samples: int, rho: float, rng: np.random.Generator, levels: np.ndarray = LEVEL_GRID
) -> np.ndarray:
    """(n, s, h) paths from daily quantile functions q (n, h, len(levels)) and a shared Gaussian factor.

    Each day's value is its quantile function read at u = Phi(z), interpolated between grid levels
    (held at the end levels beyond them); z = sqrt(rho) * common + sqrt(1 - rho) * own, so every day
    keeps its marginal and multi-day totals widen with rho.
    """
    n, h, _ = q.shape
    return quantile_paths(q, copula_normals(n, n_samples, h, rho, rng), levels)


PATH_BLOCK = 2**16  # values per block of quantile_paths


def quantile_paths(q: np.ndarray, z: np.ndarray, levels: np.ndarray = LEVEL_GRID) -> np.ndarray:
    """(n, s, h) paths: each day's quantile function q (n, h, len(levels)) read at u = Phi(z), z (n, s, h)."""
    n, s, h = z.shape
    out = np.empty(z.shape, np.float32)
    # A block of series at a time: its ~8 temporaries of 64k values stay in the cache, where whole-panel
    # ones went through memory (3.8x slower at 500 to 8,000 series x 500 paths x 10 days).
    step = max(1, PATH_BLOCK // (s * h))
    for a in range(0, n, step):
        out[a : a + step] = _read(q[a : a + step], z[a : a + step], levels)
    return out


def _read(q: np.ndarray, z: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """`quantile_paths` of one block of series, in float64."""
    n, h, k = q.shape
    u = np.clip(special.ndtr(z), levels[0], levels[-1])
    hi = np.clip(np.searchsorted(levels, u), 1, k - 1)
    w = (u - levels[hi - 1]) / (levels[hi] - levels[hi - 1])
    # Flat indices of (series, day, level) into q: a gather, not a broadcast of q over the samples.
    at = (np.arange(n)[:, None, None] * h + np.arange(h)[None, None, :]) * k + hi
    flat = q.reshape(-1)
    lo_v, hi_v = flat[at - 1], flat[at]
    return lo_v + w * (hi_v - lo_v)


def finish(mean: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip at zero demand and sort quantiles so none cross."""
    return np.clip(mean, 0, None), np.sort(np.clip(q, 0, None), axis=-1)


BACKTESTS = 2  # rolling-origin windows of one horizon behind every split-conformal band


def backtest_errors(
    df: pd.DataFrame, horizon: int, min_days: int, cross_validate: Callable[[pd.DataFrame], pd.DataFrame]
) -> tuple[pd.DataFrame, pd.Index]:
    """Backtest errors of the series long enough for BACKTESTS windows of `horizon` days after the
    model's own `min_days`, and those series' ids. `cross_validate(their rows)` gives [unique_id, error]
    (actual - forecast), every day of every window; with no such series the frame is empty."""
    lengths = df.groupby("unique_id").size()
    long = lengths.index[lengths >= BACKTESTS * horizon + min_days]
    if not len(long):
        return pd.DataFrame({"unique_id": pd.Series(dtype=object), "error": pd.Series(dtype=float)}), long
    return cross_validate(df[df["unique_id"].isin(long)]), long


class Residuals:
    """Split-conformal bands: each series' signed backtest errors (actual - forecast) as quantiles on
    LEVEL_GRID, added to a point forecast. Series fitted without errors got the pooled errors'
    quantiles, or, where no series was long enough to backtest, Gaussian quantiles of their training
    demand's spread (the peers' fallback, `peers.gaussian_band`); series never seen at fit get the
    median series' band."""

    def __init__(self, ids: list[str], table: np.ndarray):
        self.ids, self.table = list(ids), table  # table: (len(ids), len(LEVEL_GRID))
        self.row = {uid: i for i, uid in enumerate(self.ids)}
        # A series without residuals gets the median series' band: computed once, not per request.
        self.unseen = np.median(table, axis=0) if len(table) else np.zeros(len(LEVEL_GRID))

    @classmethod
    def from_errors(cls, errors: pd.DataFrame, history: pd.DataFrame) -> Residuals:
        """`errors`: [unique_id, error] of the backtests (may be empty); `history`: [unique_id, y] fitted on."""
        spread = history.groupby("unique_id")["y"].std(ddof=0)
        error = errors["error"].astype(float)  # an empty frame has no dtype to take a quantile of
        out = (
            error.groupby(errors["unique_id"])
            .quantile(list(LEVEL_GRID))
            .unstack()
            .reindex(index=spread.index, columns=list(LEVEL_GRID))
            .to_numpy(dtype=float)
        )
        missing = np.isnan(out).any(axis=1)
        if len(error):
            out[missing] = np.quantile(error.to_numpy(), LEVEL_GRID)
        else:
            out[missing] = spread.to_numpy()[missing, None] * norm.ppf(LEVEL_GRID)
        return cls(list(spread.index), out)

    def band(self, mean: np.ndarray, skus: list[str], levels) -> tuple[np.ndarray, np.ndarray]:
        """Mean (n, h) and quantiles (n, h, len(levels)): the mean plus each series' error quantiles."""
        rows = [self.table[self.row[s]] if s in self.row else self.unseen for s in skus]
        at = np.stack([np.interp(levels, LEVEL_GRID, r) for r in rows])
        return finish(mean, mean[..., None] + at[:, None, :])

    def save(self, path: Path) -> dict:
        np.save(path / "residuals.npy", self.table)
        return {"residual_ids": self.ids}

    @classmethod
    def load(cls, path: Path, meta: dict) -> Residuals:
        return cls(meta["residual_ids"], np.load(path / "residuals.npy"))


def future_flags(future: pd.DataFrame | None, skus: list[str], dates: pd.DatetimeIndex) -> dict[str, np.ndarray | None]:
    """Promotion and event flags (n, h) of the forecast days, when the caller knows them (else None)."""
    out: dict[str, np.ndarray | None] = {}
    for col in FLAGS:
        if future is None or col not in future:
            out[col] = None
            continue
        wide = future.pivot_table(index="unique_id", columns="ds", values=col, aggfunc="max")
        out[col] = wide.reindex(index=skus, columns=dates).fillna(0.0).to_numpy(dtype=np.float32)
    return out
