"""Featurize: order lines -> zero-filled daily demand panel (`unique_id, ds, y, price`) and its splits."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from supplyml.config import DataConfig, FeatureConfig

log = logging.getLogger(__name__)


def daily_demand(raw: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """Units demanded per SKU and day, with the day's average selling price.

    A cancellation offsets only its own customer's purchases of that SKU on that day, so the
    80,995- and 74,215-unit orders cancelled the same day vanish and a later return never eats
    another customer's demand. Zero/negative prices are stock adjustments, not sales.
    """
    c = cfg.columns
    df = pd.DataFrame({
        "sku": raw[c.sku].astype(str).str.strip().str.upper(),
        "ds": pd.to_datetime(raw[c.date]).dt.normalize(),
        "qty": raw[c.quantity].astype(float),
        "price": raw[c.price].astype(float),
        "customer": raw[c.customer].fillna(-1) if c.customer in raw else -1,
    })
    codes = {code.upper() for code in cfg.non_product_codes}
    prefixes = tuple(p.upper() for p in cfg.non_product_prefixes)
    not_product = df["sku"].isin(codes)
    if prefixes:
        not_product |= df["sku"].str.startswith(prefixes)
    df = df[~not_product & (df["price"] > 0)]
    df = df.assign(sold=df["qty"].clip(lower=0), revenue=df["qty"].clip(lower=0) * df["price"])
    per_customer = df.groupby(["sku", "ds", "customer"]).agg(
        qty=("qty", "sum"), sold=("sold", "sum"), revenue=("revenue", "sum"))
    per_customer["qty"] = per_customer["qty"].clip(lower=0)
    daily = per_customer.groupby(level=["sku", "ds"]).sum()
    daily["price"] = (daily["revenue"] / daily["sold"]).where(daily["sold"] > 0)
    return daily.reset_index().rename(columns={"sku": "unique_id", "qty": "y"})[["unique_id", "ds", "y", "price"]]


def build_panel(daily: pd.DataFrame, cfg: FeatureConfig) -> pd.DataFrame:
    """Every calendar day from each selected series' first sale to the data's last day, zero-filled."""
    end = daily["ds"].max()
    selling_days = daily[daily["y"] > 0].groupby("unique_id")["ds"].nunique()
    keep = selling_days[selling_days >= cfg.min_selling_days].index
    if cfg.max_series is not None:
        volume = daily[daily["unique_id"].isin(keep)].groupby("unique_id")["y"].sum()
        keep = volume.nlargest(cfg.max_series).index
    daily = daily[daily["unique_id"].isin(keep) & (daily["y"] > 0)]
    if daily.empty:
        raise ValueError(f"no series has >= {cfg.min_selling_days} selling days; lower features.min_selling_days")
    first = daily.groupby("unique_id")["ds"].min()
    index = pd.MultiIndex.from_tuples(
        [(uid, d) for uid, start in first.items() for d in pd.date_range(start, end, freq="D")],
        names=["unique_id", "ds"])
    panel = daily.set_index(["unique_id", "ds"]).reindex(index)
    panel["y"] = panel["y"].fillna(0.0)
    # Price on days without sales: the last price seen, before the first the first one.
    panel["price"] = panel.groupby(level="unique_id")["price"].transform(lambda p: p.ffill().bfill())
    panel = panel.reset_index()
    log.info("panel: %d series, %d rows, %s .. %s", panel["unique_id"].nunique(), len(panel),
             panel["ds"].min().date(), end.date())
    return panel


@dataclass(frozen=True)
class Split:
    """Time-based cut: train < val_start <= val < test_start <= test."""

    val_start: pd.Timestamp
    test_start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def from_panel(cls, panel: pd.DataFrame, cfg: FeatureConfig) -> "Split":
        end = panel["ds"].max()
        test_start = end - pd.Timedelta(days=cfg.horizon - 1)
        return cls(test_start - pd.Timedelta(days=cfg.val_days), test_start, end)

    def train(self, panel: pd.DataFrame) -> pd.DataFrame:
        return panel[panel["ds"] < self.val_start]

    def fit(self, panel: pd.DataFrame) -> pd.DataFrame:
        """Train plus validation: what the final model and the peers learn from."""
        return panel[panel["ds"] < self.test_start]

    def test(self, panel: pd.DataFrame) -> pd.DataFrame:
        return panel[panel["ds"] >= self.test_start]


def calendar_features(ds: pd.DatetimeIndex | pd.Series) -> np.ndarray:
    """Day of week and month as points on circles, shape (n, 4): no fitted state, same at serving."""
    ds = pd.DatetimeIndex(ds)
    dow = 2 * np.pi * ds.dayofweek.to_numpy() / 7
    month = 2 * np.pi * (ds.month.to_numpy() - 1) / 12
    return np.stack([np.sin(dow), np.cos(dow), np.sin(month), np.cos(month)], axis=1).astype(np.float32)
