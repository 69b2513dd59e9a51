"""Implicit feedback from the order lines, and the global temporal split it is judged on.

One interaction is a customer buying a SKU on a day: `customer_id, sku, ds, quantity, value, country`, one
row per customer x SKU x day (country: where that day's lines shipped, missing when the file has none).
The rules are the demand side's (`supplyml.features.daily_demand`): SKUs are
stripped and upper-cased; the configured non-product codes and prefixes and zero/negative prices are
dropped; a cancellation (a negative quantity, as for demand) offsets only its own
customer's purchases of that SKU on that day, and a day netted to nothing is no purchase. Lines without a
CustomerID cannot be anyone's feedback and are left out. `data.columns.location` is ignored: a product is
the same product wherever it ships from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from supplyml.config import Config, DataConfig
from supplyml.data import DataError, data_file, is_product, parse_days, parse_number, read_table

log = logging.getLogger(__name__)

FRAME_COLUMNS = ["customer_id", "sku", "ds", "quantity", "value", "country"]


def purchase_lines(raw: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """Order lines of identified customers, as `customer_id, sku, ds, quantity, price, description,
    country`, quantity signed (cancellations negative); up to `data.until` when set."""
    c = cfg.columns
    needed = [c.sku, c.date, c.quantity, c.price, c.customer]
    if missing := [col for col in needed if col not in raw]:
        raise DataError(
            f"{cfg.path}: order-line column(s) {missing} not found; the file has "
            f"{list(raw.columns)}. Map them with --set data.columns.<field>=<column>."
        )
    qty = parse_number(raw[c.quantity])  # a cancellation is a negative quantity, as for demand
    df = pd.DataFrame(
        {
            "customer_id": _customer_ids(raw[c.customer]),
            "sku": raw[c.sku].astype(str).str.strip().str.upper(),
            "ds": parse_days(raw[c.date]),
            "quantity": qty,
            "price": parse_number(raw[c.price]),
            "description": raw[c.description].astype("string").str.strip() if c.description in raw else pd.NA,
            "country": raw[c.country].astype("string").str.strip() if c.country in raw else pd.NA,
        }
    )
    keep = is_product(df["sku"], cfg) & (df["price"] > 0) & df["customer_id"].notna() & df["ds"].notna()
    df = df[keep & df["quantity"].notna()]
    if cfg.until is not None:
        df = df[df["ds"] <= pd.Timestamp(cfg.until)]
    return df.reset_index(drop=True)


def _customer_ids(values: pd.Series) -> pd.Series:
    """CustomerID as text: 17850.0 (read as a float) and "17850" are the same customer."""
    num = pd.to_numeric(values, errors="coerce")
    whole = num.notna() & (num == num.round())
    text = values.astype("string").str.strip()
    out = text.where(~whole, num.round().astype("Int64").astype("string"))
    return out.where(values.notna() & (out != ""), None).astype(object)


def interactions(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per customer x SKU x day that is still a purchase once its cancellations are netted:
    quantity (units) and value (units x the day's average selling price of its sales lines)."""
    sold = lines["quantity"].clip(lower=0)
    g = (
        lines.assign(sold=sold, revenue=sold * lines["price"])
        .groupby(["customer_id", "sku", "ds"], sort=True, observed=True)
        .agg(quantity=("quantity", "sum"), sold=("sold", "sum"), revenue=("revenue", "sum"), country=("country", "last"))
    )
    g = g[(g["quantity"] > 0) & (g["sold"] > 0)]
    g["value"] = g["quantity"] * g["revenue"] / g["sold"]
    return g.reset_index()[FRAME_COLUMNS]


def item_table(lines: pd.DataFrame, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """Per SKU: its latest description and its median unit price over sales lines, as of `until`
    (a model fitted at a cutoff reads them as of it, so never a later price)."""
    sales = lines[lines["quantity"] > 0]
    if until is not None:
        sales = sales[sales["ds"] <= until]
    latest = sales.dropna(subset=["description"]).sort_values("ds").groupby("sku")["description"].last()
    price = sales.groupby("sku")["price"].median()
    return pd.DataFrame({"description": latest, "price": price}).rename_axis("sku").reset_index()


def customer_table(lines: pd.DataFrame, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """Per customer: the country of their latest line as of `until`."""
    rows = lines if until is None else lines[lines["ds"] <= until]
    country = rows.dropna(subset=["country"]).sort_values("ds").groupby("customer_id")["country"].last()
    return country.rename_axis("customer_id").reset_index()


@dataclass
class Interactions:
    frame: pd.DataFrame  # FRAME_COLUMNS
    lines: pd.DataFrame  # the cleaned order lines behind it (item_table / customer_table read these)


def load_interactions(cfg: Config, root: str = ".") -> Interactions:
    """The configured order lines (pulled from DVC when absent) as interactions."""
    with data_file(cfg.data.path, root, cfg.data.rev) as path:
        raw = read_table(path, cfg.data)
    if cfg.data.format != "transactions":
        raise DataError(
            f"{cfg.data.path}: recommendations need order lines with customers (data.format=transactions), not a daily panel"
        )
    lines = purchase_lines(raw, cfg.data)
    frame = interactions(lines)
    log.info(
        "%d interactions: %d customers x %d SKUs, %s to %s",
        len(frame),
        frame["customer_id"].nunique(),
        frame["sku"].nunique(),
        frame["ds"].min().date(),
        frame["ds"].max().date(),
    )
    return Interactions(frame, lines)


# ---------------------------------------------------------------- the global temporal split


@dataclass(frozen=True)
class Split:
    """A global temporal split: test = the last `test_days` calendar days, validation = the `val_days`
    before them, train = everything earlier. Hyperparameters are chosen by fitting on `train` and
    scoring on `val`; the test score comes from a refit on `fit` (train + val). Never random: every
    customer's future stays in the future."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    val_start: pd.Timestamp
    test_start: pd.Timestamp
    end: pd.Timestamp  # the last day of the data, the last test day

    @property
    def fit(self) -> pd.DataFrame:
        return pd.concat([self.train, self.val], ignore_index=True)

    def dates(self) -> dict[str, str]:
        return {
            "train_end": str((self.val_start - pd.Timedelta(days=1)).date()),
            "val_start": str(self.val_start.date()),
            "test_start": str(self.test_start.date()),
            "end": str(self.end.date()),
        }


def temporal_split(frame: pd.DataFrame, test_days: int, val_days: int) -> Split:
    end = frame["ds"].max()
    test_start = end - pd.Timedelta(days=test_days - 1)
    val_start = test_start - pd.Timedelta(days=val_days)
    if frame["ds"].min() >= val_start:
        raise ValueError(
            f"the interactions span {frame['ds'].min().date()} to {end.date()}: too short for "
            f"{val_days} validation and {test_days} test days with any training days before them"
        )
    ds = frame["ds"]
    return Split(
        frame[ds < val_start].reset_index(drop=True),
        frame[(ds >= val_start) & (ds < test_start)].reset_index(drop=True),
        frame[ds >= test_start].reset_index(drop=True),
        val_start,
        test_start,
        end,
    )


def relevant_items(window: pd.DataFrame, known: set[str] | None = None) -> dict[str, set[str]]:
    """What each customer active in `window` bought there (restricted to `known` customers)."""
    if known is not None:
        window = window[window["customer_id"].isin(known)]
    return {c: set(s) for c, s in window.groupby("customer_id")["sku"]}


def purchased_items(history: pd.DataFrame) -> dict[str, set[str]]:
    return {c: set(s) for c, s in history.groupby("customer_id")["sku"]}


def catalogue(history: pd.DataFrame) -> list[str]:
    """The SKUs a model fitted on `history` may recommend, in a fixed (sorted) order."""
    return sorted(np.unique(history["sku"]).tolist())


def split(cfg: Config, frame: pd.DataFrame) -> Split:
    return temporal_split(frame, cfg.recommend.test_days, cfg.recommend.val_days)


def windows(cfg: Config, frame: pd.DataFrame) -> list[Split]:
    """The gate's held-out windows, oldest first: `features.test_origins` windows of `recommend.test_days`,
    the last ending with the data, each split from the days up to its own end. Tuning reads the first
    window's validation days, so no evidence window was chosen on."""
    end, days = frame["ds"].max(), cfg.recommend.test_days
    return [
        split(cfg, frame[frame["ds"] <= end - pd.Timedelta(days=k * days)]) for k in reversed(range(cfg.features.test_origins))
    ]
