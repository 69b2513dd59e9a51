"""K-means segments: customers by RFM (recency, frequency, monetary) from order lines, products by the
shape of their daily demand (volume, intermittency, weekly seasonality). k is chosen by silhouette.

Names come from a deterministic rule on the centroids: per feature, segments are ranked by their
centroid (standardised space); rank r of k is "low" when 3r < k-1, "high" when 3r > 2(k-1), else "mid"
(k=2: low/high; k=3: low/mid/high), and each feature turns its level into a word ("recent", "lapsed").
Segment ids are ordered by the first feature's centroid, ascending, so they do not depend on how
k-means happened to number its clusters."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from supplyml.config import Config, DataConfig
from supplyml.data import DataError
from supplyml.features import daily_demand_by

log = logging.getLogger(__name__)

# Words for the low, mid and high level of each feature, in the order the features are clustered.
CUSTOMER_WORDS = {
    "recency": ("recent", "lapsing", "lapsed"),
    "frequency": ("rare", "occasional", "frequent"),
    "monetary": ("low value", "mid value", "high value"),
}
PRODUCT_WORDS = {
    "mean_demand": ("low volume", "mid volume", "high volume"),
    "zero_share": ("steady", "intermittent", "highly intermittent"),
    "weekly_strength": ("flat week", "mild weekly cycle", "strong weekly cycle"),
}


@dataclass(frozen=True)
class Segmentation:
    labels: pd.Series  # segment id per customer or product
    k: int
    silhouette: dict[int, float]  # mean silhouette per k tried
    profile: pd.DataFrame  # per segment: name, count, mean of each raw feature
    names: dict[int, str]


def customer_segments(raw: pd.DataFrame, cfg: Config, as_of=None) -> Segmentation:
    """RFM segments of the customers who bought before `as_of` (default: the day after the last day of
    demand: the data's last day, or `data.until`)."""
    features = rfm(raw, cfg.data, as_of)
    return _segment(features, np.log1p(features), CUSTOMER_WORDS, cfg)


def purchase_segments(frame: pd.DataFrame, cfg: Config, as_of) -> Segmentation:
    """RFM segments from interactions (`customer_id, ds, value`, one row per customer x SKU x day, as the
    recommenders see them) before `as_of`: recency in days since the last purchase day, frequency in
    purchase days (the interactions carry no invoices), monetary the total value."""
    as_of = pd.Timestamp(as_of)
    frame = frame[frame["ds"] < as_of]
    per = frame.groupby("customer_id").agg(last=("ds", "max"), frequency=("ds", "nunique"), monetary=("value", "sum"))
    features = pd.DataFrame(
        {
            "recency": (as_of - per["last"]).dt.days.astype(float),
            "frequency": per["frequency"].astype(float),
            "monetary": per["monetary"].clip(lower=0),
        }
    )
    return _segment(features, np.log1p(features), CUSTOMER_WORDS, cfg)


def product_segments(panel: pd.DataFrame, cfg: Config) -> Segmentation:
    """Demand-shape segments of the panel's series (`unique_id, ds, y`)."""
    features = demand_shape(panel)
    return _segment(features, features.assign(mean_demand=np.log1p(features["mean_demand"])), PRODUCT_WORDS, cfg)


def rfm(raw: pd.DataFrame, cfg: DataConfig, as_of=None) -> pd.DataFrame:
    """Per customer with a purchase before `as_of`: recency (days from the last purchase day to `as_of`),
    frequency (distinct invoices; purchase days where data.columns.invoice is null) and monetary (total
    value), counted as the demand side counts units.

    The cleaning rules (non-product codes, zero prices, a cancellation netting only its own customer's
    purchase of that SKU that day) are `features.daily_demand`'s: `daily_demand_by` nets each (SKU, customer, day)
    exactly as demand is. An invoice counts
    when one of its lines left net demand; a cancellation alone is no visit and no value."""
    c = cfg.columns
    if missing := [col for col in (c.customer, c.invoice, c.date) if col is not None and col not in raw]:
        raise DataError(
            f"{cfg.path}: column(s) {missing} needed for customer segments not found; the file has "
            f"{list(raw.columns)}. Map them with --set data.columns.<field>=<column>."
        )
    when = pd.to_datetime(raw[c.date])
    if as_of is None:  # the day after the last day of demand, as `to_daily` cuts it (data.until)
        last = when.max().normalize()
        as_of = (last if cfg.until is None else min(last, pd.Timestamp(cfg.until))) + pd.Timedelta(days=1)
    as_of = pd.Timestamp(as_of)
    lines = raw[raw[c.customer].notna() & (when < as_of)]
    codes, customers = pd.factorize(lines[c.customer])
    code = pd.Series(codes, index=lines.index)
    by_customer = _bought(lines, cfg, {"customer": code})
    # Without invoice numbers, a customer's purchases on one day are one order.
    order = lines[c.invoice].astype(str).str.strip() if c.invoice else when[lines.index].dt.strftime("%Y-%m-%d")
    by_invoice = _bought(lines, cfg, {"customer": code, "invoice": order})
    if by_customer.empty:
        raise ValueError(
            f"no purchases by a known customer before {as_of.date()}; check as_of and data.columns.customer ({c.customer})"
        )
    visits = by_invoice.merge(by_customer[["sku", "ds", "customer"]])
    by_customer["value"] = by_customer["y"] * by_customer["price"]
    per = by_customer.groupby("customer").agg(last=("ds", "max"), monetary=("value", "sum"))
    out = pd.DataFrame(
        {
            "recency": (as_of - per["last"]).dt.days.astype(float),
            "frequency": visits.groupby("customer")["invoice"].nunique().reindex(per.index).astype(float),
            "monetary": per["monetary"],
        }
    )
    out.index = customers[out.index]
    out.index.name = "customer"
    return out.sort_index()


def _bought(lines: pd.DataFrame, cfg: DataConfig, by: dict[str, pd.Series]) -> pd.DataFrame:
    """`features.daily_demand_by`'s cells with net demand left: each line is netted exactly as demand is."""
    daily = daily_demand_by(lines, cfg, by)
    return daily[daily["y"] > 0].copy()


def demand_shape(panel: pd.DataFrame) -> pd.DataFrame:
    """Per series: mean_demand (mean daily units), zero_share (share of days without demand; ADI is
    1 / (1 - zero_share) on the same days, so it would add nothing) and weekly_strength: the share of
    the series' variance that its day-of-week means explain (between-weekday sum of squares over the
    total; 0 for a constant series). 1 is a pure weekly profile; no trend or yearly season is removed."""
    uid, y = panel["unique_id"], panel["y"].astype(float)
    series_mean = y.groupby(uid).transform("mean")
    weekday_mean = y.groupby([uid, panel["ds"].dt.dayofweek]).transform("mean")
    between = ((weekday_mean - series_mean) ** 2).groupby(uid).sum()
    total = ((y - series_mean) ** 2).groupby(uid).sum()
    out = pd.DataFrame(
        {
            "mean_demand": y.groupby(uid).mean(),
            "zero_share": (y == 0).groupby(uid).mean(),
            "weekly_strength": (between / total).where(total > 0, 0.0),
        }
    )
    out.index.name = "unique_id"
    return out


def _segment(
    features: pd.DataFrame, transformed: pd.DataFrame, words: dict[str, tuple[str, str, str]], cfg: Config
) -> Segmentation:
    """KMeans on the standardised `transformed` features for every k in range; the best silhouette wins
    (the smaller k on a tie). The profile shows the untransformed `features`."""
    sc = cfg.segments
    x = StandardScaler().fit_transform(transformed[list(words)].to_numpy())
    lo, hi = sc.k_range[0], min(sc.k_range[1], len(x) - 1)  # silhouette needs 2 <= k <= n - 1
    if hi < lo:
        raise ValueError(
            f"{len(x)} points cannot be split into {lo}..{sc.k_range[1]} segments; lower segments.k_range or segment more data"
        )
    sample = sc.silhouette_sample if len(x) > sc.silhouette_sample else None
    fits, silhouette = {}, {}
    for k in range(lo, hi + 1):
        labels = KMeans(n_clusters=k, n_init=sc.n_init, random_state=cfg.seed).fit_predict(x)
        if len(np.unique(labels)) < k:  # fewer distinct points than k: this k is not a real split
            continue
        fits[k] = labels
        silhouette[k] = float(silhouette_score(x, labels, sample_size=sample, random_state=cfg.seed))
    if not silhouette:
        raise ValueError(f"no k in {lo}..{hi} splits these {len(x)} points (too few distinct ones)")
    k = max(silhouette, key=silhouette.__getitem__)
    centroids = pd.DataFrame(x, columns=list(words)).groupby(fits[k]).mean()
    order = centroids.sort_values(list(words)).index  # segment 0: lowest first feature
    relabel = {old: new for new, old in enumerate(order)}
    centroids = centroids.rename(index=relabel).sort_index()
    labels = pd.Series(pd.Series(fits[k]).map(relabel).to_numpy(), index=features.index, name="segment")
    names = _names(centroids, words)
    profile = features.groupby(labels).mean()
    profile.insert(0, "count", labels.value_counts().sort_index())
    profile.insert(0, "name", pd.Series(names))
    log.info("segments: k=%d of %s, silhouette %s", k, sorted(silhouette), {key: round(v, 3) for key, v in silhouette.items()})
    return Segmentation(labels, k, silhouette, profile, names)


def _names(centroids: pd.DataFrame, words: dict[str, tuple[str, str, str]]) -> dict[int, str]:
    k = len(centroids)
    ranks = centroids.rank(method="first").astype(int) - 1  # ties broken by segment id: deterministic
    level = np.where(3 * ranks < k - 1, 0, np.where(3 * ranks > 2 * (k - 1), 2, 1))
    names = {seg: ", ".join(words[f][lv] for f, lv in zip(centroids.columns, row)) for seg, row in zip(centroids.index, level)}
    seen: dict[str, int] = {}
    for seg, name in names.items():  # k > 3 can give two segments the same words: number the repeats
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[seg] = f"{name} ({seen[name]})"
    return names
