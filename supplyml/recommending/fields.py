"""DeepFM's fields (supplyml.recommending.modules.DeepFM): categorical codes that describe a customer, a
product and the pair as of a day, read from the interactions before that day only.

- customer: its index, RFM segment (supplyml.segments.purchase_segments), country of its latest purchase;
- product: its index, demand segment (supplyml.segments.product_segments over its daily units), price
  band (quintile of its median unit price), popularity band (log2 of its distinct buyers in the last
  `popularity_days`);
- pair: recency of the customer's last purchase of the product (0: never bought) and the number of days
  they bought it (0: never).

The training examples are past windows of `horizon` days, each described as of its first day: every
customer active in the window and known before it, with all their earlier products (the habits a list
must place or not), the products they bought in the window, and `negatives` uniform draws from the
catalogue; the label is "bought in the window". Recency and frequency therefore carry the re-buy rate,
and the product fields the chance of a first purchase.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

RECENCY_DAYS = (7, 14, 28, 56, 112, 224)  # upper edges of the recency buckets; code 0 is "never bought"
FREQUENCY_DAYS = (1, 2, 3, 5, 8)  # upper edges of the purchase-day buckets
PRICE_BANDS = 5
POPULARITY_BANDS = 12  # ceil(log2(buyers + 1)): 0 (none), 1 (one), 2 (2-3) .. 11 (1,024+)
SEGMENTS = 8  # the default segments.k_range's largest k (fields._segments)
NAMES = (
    "customer",
    "rfm_segment",
    "country",
    "product",
    "demand_segment",
    "price_band",
    "popularity_band",
    "recency",
    "frequency",
)


@dataclass
class Fields:
    """The codes of every customer, product and bought pair as of one day; `sizes` is each field's cardinality."""

    customer: np.ndarray  # (n_users, 3): index, RFM segment, country
    product: np.ndarray  # (n_items, 4): index, demand segment, price band, popularity band
    recency: sp.csr_matrix  # (n_users, n_items) recency code of each bought pair; absent = 0, never
    frequency: sp.csr_matrix  # the same for the purchase-day count
    sizes: list[int]
    ks: tuple[int, int] = (0, 0)  # customer and product segments found (0: none); training only, not saved

    def codes(self, rows: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """(n, 9) int64 codes of the pairs (rows[i], cols[i]); without `cols`, of each row with every product
        in catalogue order (n = len(rows) x n_items)."""
        if cols is None:
            n_items = len(self.product)
            cols = np.tile(np.arange(n_items), len(rows))
            rows = np.repeat(rows, n_items)
        pair = np.stack([_lookup(self.recency, rows, cols), _lookup(self.frequency, rows, cols)], 1)
        return np.concatenate([self.customer[rows], self.product[cols], pair], 1).astype(np.int64)

    def save(self, path: Path) -> None:
        np.savez(path / "fields.npz", customer=self.customer, product=self.product, sizes=np.array(self.sizes))
        sp.save_npz(path / "recency.npz", self.recency)
        sp.save_npz(path / "frequency.npz", self.frequency)

    @classmethod
    def load(cls, path: Path) -> Fields:
        with np.load(path / "fields.npz") as f:
            customer, product, sizes = f["customer"], f["product"], f["sizes"].tolist()
        return cls(
            customer, product, sp.load_npz(path / "recency.npz").tocsr(), sp.load_npz(path / "frequency.npz").tocsr(), sizes
        )


def _lookup(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return np.asarray(m[rows, cols]).ravel()


def as_of(
    frame: pd.DataFrame,
    day: pd.Timestamp,
    shape: tuple[int, int],
    countries: dict,
    popularity_days: int,
    seed: int,
    ks: tuple[int | None, int | None] = (None, None),
) -> Fields:
    """The fields of `frame`'s customers (`row`) and products (`col`) from its interactions before `day`.
    `ks`: the number of customer and product segments (None: chosen by silhouette, as the report does; 0: none)."""
    from supplyml import segments

    n_users, n_items = shape
    before = frame[frame["ds"] < day]
    customer = np.zeros((n_users, 3), dtype=np.int64)
    customer[:, 0] = np.arange(n_users)
    product = np.zeros((n_items, 4), dtype=np.int64)
    product[:, 0] = np.arange(n_items)
    found = [0, 0]
    if len(before):
        rows = before.drop_duplicates("customer_id").set_index("customer_id")["row"]
        rfm, found[0] = _segments(lambda cfg: segments.purchase_segments(before, cfg, day), ks[0], seed)
        customer[rows.reindex(rfm.index).to_numpy(), 1] = rfm.to_numpy()
        daily = before.groupby(["col", "ds"])["quantity"].sum().unstack(fill_value=0.0)
        units = daily.reindex(columns=pd.date_range(before["ds"].min(), day - pd.Timedelta(days=1)), fill_value=0.0)
        panel = units.stack().rename("y").rename_axis(["unique_id", "ds"]).reset_index()
        shape_seg, found[1] = _segments(lambda cfg: segments.product_segments(panel, cfg), ks[1], seed)
        product[shape_seg.index.to_numpy(), 1] = shape_seg.to_numpy()
    if "country" in before:
        latest = before.dropna(subset=["country"]).sort_values("ds", kind="stable").drop_duplicates("row", keep="last")
        customer[latest["row"].to_numpy(), 2] = latest["country"].map(countries).fillna(0).to_numpy()

    price = (before["value"] / before["quantity"]).groupby(before["col"]).median()
    if len(price):
        band = np.minimum((price.rank(pct=True).to_numpy() * PRICE_BANDS).astype(int), PRICE_BANDS - 1)
        product[price.index.to_numpy(), 2] = band + 1  # 0: never sold before `day`
    recent = before[before["ds"] >= day - pd.Timedelta(days=popularity_days)].drop_duplicates(["row", "col"])
    buyers = np.bincount(recent["col"].to_numpy(), minlength=n_items)
    product[:, 3] = np.minimum(np.ceil(np.log2(buyers + 1)), POPULARITY_BANDS - 1).astype(int)

    pairs = before.drop_duplicates(["row", "col", "ds"]).groupby(["row", "col"])["ds"].agg(["max", "size"]).reset_index()
    age = (day - pairs["max"]).dt.days.to_numpy()
    recency = np.searchsorted(RECENCY_DAYS, age, side="left") + 1
    frequency = np.searchsorted(FREQUENCY_DAYS, pairs["size"].to_numpy(), side="left") + 1
    rc = (pairs["row"].to_numpy(), pairs["col"].to_numpy())
    sizes = [n_users, SEGMENTS, len(countries) + 1, n_items, SEGMENTS, PRICE_BANDS + 1, POPULARITY_BANDS]
    sizes += [len(RECENCY_DAYS) + 2, len(FREQUENCY_DAYS) + 2]
    return Fields(
        customer,
        product,
        sp.csr_matrix((recency.astype(np.int64), rc), shape=shape),
        sp.csr_matrix((frequency.astype(np.int64), rc), shape=shape),
        sizes,
        (found[0], found[1]),
    )


def _segments(segment, k: int | None, seed: int) -> tuple[pd.Series, int]:
    """k-means labels from `segment(cfg)` and their k; k fixed, or by silhouette over the default 2..8 when
    None (the model's own: a user's `segments.*` shape the report). Ids are ordered by the first feature's
    centroid, so with one k they mean the same segments in every window. (none, 0) when the points cannot
    be split: everyone keeps code 0."""
    from supplyml.config import Config, SegmentsConfig

    if k == 0:
        return pd.Series(dtype=np.int64), 0
    cfg = Config(seed=seed) if k is None else Config(seed=seed, segments=SegmentsConfig(k_range=(k, k)))
    try:
        found = segment(cfg)
    except ValueError:
        return pd.Series(dtype=np.int64), 0
    return found.labels, found.k


def country_codes(frame: pd.DataFrame) -> dict[str, int]:
    """1.. per country seen in `frame` (0: unknown)."""
    names = sorted(frame["country"].dropna().unique()) if "country" in frame else []
    return {c: i + 1 for i, c in enumerate(names)}


def examples(
    frame: pd.DataFrame, shape: tuple[int, int], horizon: int, windows: int, negatives: int, popularity_days: int, seed: int
) -> tuple[np.ndarray, np.ndarray, Fields]:
    """Training codes and labels from the last `windows` windows of `horizon` days (see the module
    docstring), and the fields as of the day after the frame's last day (what the model scores with)."""
    if min(horizon, windows, negatives) < 1:
        raise ValueError(f"deepfm: horizon, windows and negatives must be at least 1, not {horizon}, {windows}, {negatives}")
    countries = country_codes(frame)
    end = frame["ds"].max() + pd.Timedelta(days=1)
    final = as_of(frame, end, shape, countries, popularity_days, seed)  # the segments' k, chosen here, holds for all
    rng = np.random.default_rng(seed)
    codes, labels = [], []
    for w in range(1, windows + 1):
        start = end - pd.Timedelta(days=w * horizon)
        if start <= frame["ds"].min():
            break
        fields = as_of(frame, start, shape, countries, popularity_days, seed, final.ks)
        window = frame[(frame["ds"] >= start) & (frame["ds"] < start + pd.Timedelta(days=horizon))]
        active = np.unique(window["row"].to_numpy())
        active = active[fields.recency[active].getnnz(1) > 0]  # known before the window
        habits = fields.recency[active].tocoo()
        bought = window[window["row"].isin(active)].drop_duplicates(["row", "col"])
        drawn = rng.integers(0, shape[1], size=len(active) * negatives)
        rows = np.concatenate([active[habits.row], bought["row"].to_numpy(), np.repeat(active, negatives)])
        cols = np.concatenate([habits.col, bought["col"].to_numpy(), drawn])
        key = np.unique(rows.astype(np.int64) * shape[1] + cols)
        rows, cols = key // shape[1], key % shape[1]
        positive = bought["row"].to_numpy().astype(np.int64) * shape[1] + bought["col"].to_numpy()
        codes.append(fields.codes(rows, cols))
        labels.append(np.isin(key, positive).astype(np.float32))
    if not codes or not sum(map(len, labels)):
        raise ValueError(
            f"deepfm learns from customers who bought in one of its last {windows} windows of {horizon} days and "
            "before it; these interactions have none"
        )
    return np.concatenate(codes), np.concatenate(labels), final


def sampling_rate(negatives: int, n_items: int) -> float:
    """The chance that a given product is among `negatives` uniform draws (with replacement) from `n_items`."""
    return float(-np.expm1(negatives * np.log1p(-1.0 / n_items))) if n_items > 1 else 1.0
