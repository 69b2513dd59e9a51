"""The panel as dense arrays, and the context windows the network learns from."""

from __future__ import annotations

from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from supplyml.features import calendar_features

# Covariates a panel may carry, with the value that means "none".
COVARIATES = {"price": 1.0, "promo": 0.0, "event": 0.0}
# Per-step input features, in order; the first is the previous day's demand.
FEATURES = ["lag", "dow_sin", "dow_cos", "month_sin", "month_cos", "log_rel_price", "log_scale", "promo", "event"]
N_FEATURES = len(FEATURES)
LAG, PRICE, SCALE, PROMO, EVENT = (FEATURES.index(f) for f in ("lag", "log_rel_price", "log_scale", "promo", "event"))
CALENDAR = [FEATURES.index(f) for f in ("dow_sin", "dow_cos", "month_sin", "month_cos")]


@dataclass
class PanelArrays:
    """Series x days on one calendar; `observed` is False before a series' first sale."""

    ids: list[str]
    dates: pd.DatetimeIndex
    y: np.ndarray  # (n, T) float32
    observed: np.ndarray  # (n, T) bool
    price: np.ndarray  # (n, T) last known selling price
    promo: np.ndarray  # (n, T) 0/1
    event: np.ndarray  # (n, T) 0/1

    @classmethod
    def from_panel(cls, panel: pd.DataFrame) -> PanelArrays:
        panel = panel.assign(**{c: panel[c] if c in panel else default for c, default in COVARIATES.items()})
        wide = panel.pivot(index="unique_id", columns="ds", values=["y", *COVARIATES])
        dates = pd.date_range(panel["ds"].min(), panel["ds"].max(), freq="D")
        y = wide["y"].reindex(columns=dates)
        price = wide["price"].reindex(columns=dates).ffill(axis=1).bfill(axis=1).fillna(1.0)

        def flags(col: str) -> np.ndarray:
            return wide[col].reindex(columns=dates).fillna(0.0).to_numpy(dtype=np.float32)

        return cls(
            list(y.index),
            dates,
            np.nan_to_num(y.to_numpy()).astype(np.float32),
            y.notna().to_numpy(),
            price.to_numpy(dtype=np.float32),
            flags("promo"),
            flags("event"),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def calendar(self, start: int, length: int) -> np.ndarray:
        """Calendar features of day indices start..start+length-1, also past the last date."""
        return calendar_features(self.dates[0] + pd.to_timedelta(np.arange(start, start + length), unit="D"))

    def first_observed(self) -> np.ndarray:
        return self.observed.argmax(axis=1)


def scale_of(y: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """DeepAR's per-window scale: 1 + mean observed demand in the context."""
    return 1.0 + (y * observed).sum(axis=1, keepdims=True) / np.maximum(observed.sum(axis=1, keepdims=True), 1)


def windows(a: PanelArrays, rows: np.ndarray, ends: np.ndarray, context: int, length: int) -> dict[str, np.ndarray]:
    """Features, targets and mask for windows [end - length, end) of the given series.

    The first `context` days set the demand scale and the reference price; step t sees demand of
    t-1, so the network is trained exactly as it is later unrolled.
    """
    t = ends[:, None] - length + np.arange(length)[None, :]
    inside = t >= 0
    tc = np.clip(t, 0, None)
    r = rows[:, None]
    obs = a.observed[r, tc] & inside
    y = np.where(obs, a.y[r, tc], 0.0).astype(np.float32)
    lag_t = np.clip(t - 1, 0, None)
    lag_obs = a.observed[r, lag_t] & (t - 1 >= 0)
    lag = np.where(lag_obs, a.y[r, lag_t], 0.0)
    scale = scale_of(y[:, :context], obs[:, :context]).astype(np.float32)
    price = a.price[r, tc]
    price_ref = price[:, :context].mean(axis=1, keepdims=True)
    first = int(t.min())  # each day of the batch's span once, not once per window that holds it
    cal = a.calendar(first, int(t.max()) - first + 1)[t - first]
    x = np.concatenate(
        [
            np.log1p(lag / scale)[..., None],
            cal,
            np.where(inside, np.log(price / price_ref), 0.0)[..., None],
            np.broadcast_to(np.log(scale)[..., None], (*t.shape, 1)),
            np.where(inside, a.promo[r, tc], 0.0)[..., None],
            np.where(inside, a.event[r, tc], 0.0)[..., None],
        ],
        axis=-1,
    ).astype(np.float32)
    return {"x": x, "y": y, "mask": obs.astype(np.float32), "scale": scale, "price_ref": price_ref}


def future_steps(
    a: PanelArrays,
    rows: np.ndarray,
    end: int,
    horizon: int,
    w: dict[str, np.ndarray],
    promo: np.ndarray | None = None,
    event: np.ndarray | None = None,
) -> np.ndarray:
    """Features of the `horizon` days after day index `end - 1`, for windows `w` that end there.

    The demand lag is left at 0 for the caller to fill. Prices ahead are unknown, so the last one is
    held; promotions and events are zero unless the caller knows them (a promotion calendar).
    """
    n = len(rows)
    price = np.log(a.price[rows, end - 1 : end] / w["price_ref"])
    x = np.zeros((n, horizon, N_FEATURES), dtype=np.float32)
    x[..., CALENDAR] = a.calendar(end, horizon)[None]
    x[..., PRICE] = price
    x[..., SCALE] = np.log(w["scale"])
    x[..., PROMO] = 0.0 if promo is None else promo
    x[..., EVENT] = 0.0 if event is None else event
    return x


class WindowDataset(Dataset):
    """Windows drawn at random ends each epoch (training) or one fixed window per series (validation)."""

    def __init__(
        self, a: PanelArrays, context: int, horizon: int, last_end: int, per_series: int = 1, random: bool = True, seed: int = 0
    ):
        self.a, self.context, self.length = a, context, context + horizon
        self.last_end, self.random = last_end, random
        self.rows = np.repeat(np.arange(len(a)), per_series)
        # A window must contain at least one forecast day after the series' first sale.
        self.first_end = np.minimum(a.first_observed() + 1 + horizon // 2, last_end)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, idx: list[int]) -> dict[str, torch.Tensor]:
        rows = self.rows[idx]
        if self.random:
            ends = self.rng.integers(self.first_end[rows], self.last_end + 1)
        else:
            ends = np.full(len(rows), self.last_end)
        batch = windows(self.a, rows, ends, self.context, self.length)
        if not self.random:  # validation scores the forecast days only
            batch["mask"][:, : self.context] = 0.0
        return {k: torch.from_numpy(v) for k, v in batch.items()}


class WindowDataModule(pl.LightningDataModule):
    """Train on windows ending by `train_end`; validate on the days from there to the end, if any."""

    def __init__(
        self,
        a: PanelArrays,
        context: int,
        horizon: int,
        train_end: int,
        batch_size: int,
        per_series: int,
        validate: bool,
        seed: int,
    ):
        super().__init__()
        self.train = WindowDataset(a, context, horizon, train_end, per_series, random=True, seed=seed)
        total = a.y.shape[1]
        self.val = WindowDataset(a, context, total - train_end, total, random=False) if validate else None
        self.batch_size = batch_size

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, collate_fn=lambda b: b)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, shuffle=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._loader(self.val, shuffle=False) if self.val is not None else []
