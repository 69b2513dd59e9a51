"""Featurize: order lines or a daily panel -> zero-filled daily demand panel
(`unique_id, ds, y, price, promo, event`) and its splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import pandas as pd

from supplyml.columns import DAILY_COLUMNS, FLAGS, PANEL_REQUIRED
from supplyml.config import Config, DataConfig, FeatureConfig
from supplyml.data import (
    DataError,
    is_product,
    panel_mapping,
    parse_days,
    parse_flag,
    parse_number,
    row_examples,
    series_ids,
)

log = logging.getLogger(__name__)


def to_daily(raw: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """The configured input (`data.format`) as daily demand `unique_id, ds, y, price, promo, event`,
    one row per series and day that the input has; `build_panel` selects series and fills the gaps."""
    daily = panel_daily(raw, cfg) if cfg.format == "panel" else daily_demand(raw, cfg).assign(promo=0.0, event=0.0)
    if cfg.until is not None:  # train as of a past day; later actuals are what `supplyml monitor` reads
        daily = daily[daily["ds"] <= pd.Timestamp(cfg.until)]
    return daily


def daily_demand(raw: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """Units demanded per SKU and day, with the day's average selling price.

    A cancellation offsets only its own customer's purchases of that SKU on that day, so the
    80,995- and 74,215-unit orders cancelled the same day vanish and a later return never eats
    another customer's demand. Zero/negative prices are stock adjustments, not sales. With
    `columns.location` set, each (SKU, location) is its own series, `unique_id = "{sku}@{location}"`.
    """
    c = cfg.columns
    if missing := [col for col in (c.sku, c.date, c.quantity, c.price, c.location) if col and col not in raw]:
        _missing(raw, cfg, missing)
    by = {"location": raw[c.location].astype(str).str.strip()} if c.location else {}
    daily = daily_demand_by(raw, cfg, by)
    if c.location:  # the id is built on the aggregated rows, ordered as the ids themselves sort
        daily = daily.assign(sku=daily["sku"] + "@" + daily["location"]).sort_values(["sku", "ds"], ignore_index=True)
    return daily.rename(columns={"sku": "unique_id"})[["unique_id", "ds", "y", "price"]]


def daily_demand_by(raw: pd.DataFrame, cfg: DataConfig, by: dict[str, pd.Series]) -> pd.DataFrame:
    """`daily_demand`'s netting per SKU, each key of `by` (series aligned with `raw`) and day:
    columns sku, the keys, ds, y and price, for every such cell with a product line at a positive price."""
    c = cfg.columns
    if missing := [col for col in (c.sku, c.date, c.quantity, c.price) if col not in raw]:
        _missing(raw, cfg, missing)
    codes, skus = pd.factorize(raw[c.sku], use_na_sentinel=False)  # cleaned once per distinct id, not per line
    df = pd.DataFrame(
        {
            "sku": pd.Index(skus).astype(str).str.strip().str.upper()[codes],
            **by,
            "ds": pd.to_datetime(raw[c.date]).dt.normalize(),
            "qty": raw[c.quantity].astype(float),
            "price": raw[c.price].astype(float),
            "_customer": raw[c.customer].fillna(-1) if c.customer in raw else -1,  # whose cancellation nets what
        },
        index=raw.index,
    )
    df = df[is_product(df["sku"], cfg) & (df["price"] > 0)]
    df = df.assign(sold=df["qty"].clip(lower=0), revenue=df["qty"].clip(lower=0) * df["price"])
    keys = ["sku", *by, "ds"]
    per_customer = df.groupby([*keys, "_customer"]).agg(qty=("qty", "sum"), sold=("sold", "sum"), revenue=("revenue", "sum"))
    per_customer["qty"] = per_customer["qty"].clip(lower=0)
    daily = per_customer.groupby(level=keys).sum()
    daily["price"] = (daily["revenue"] / daily["sold"]).where(daily["sold"] > 0)
    return daily.reset_index().rename(columns={"qty": "y"})[[*keys, "y", "price"]]


def _missing(raw: pd.DataFrame, cfg: DataConfig, missing: list[str]) -> NoReturn:
    raise DataError(
        f"{cfg.path}: order-line column(s) {missing} not found; the file has "
        f"{list(raw.columns)}. Map them with --set data.columns.<field>=<column>."
    )


def panel_daily(raw: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """A daily panel in the file's own column names (mapped by `data.panel_columns`) as
    `unique_id, ds, y, price, promo, event`.

    With a location column every (id, location) pair is its own series, `unique_id = "{id}@{location}"`.
    A day a series has no row counts as zero demand. Missing promo/event values count as 0; price
    stays missing where not given (build_panel carries the series' price over it). Input that breaks
    a `panel_rules` rule raises DataError with example rows; in the pipeline the GX gate
    (`validation.validate_raw`) has already reported every such problem before this runs.
    """
    used, missing = panel_mapping(cfg.panel_columns, raw.columns)
    if missing:
        raise DataError(
            f"{cfg.path}: panel column(s) {missing} not found; the file has {list(raw.columns)}. Map "
            "them with --set data.panel_columns.<role>=<column> (roles: unique_id, ds, y, price, "
            "promo, event, location)."
        )
    raw = raw.reset_index(drop=True)
    key = [used[r] for r in ("unique_id", "location") if r in used]
    values, rules = panel_rules(raw, used)
    # The gate reports a missing and an unparseable value apart; here one error per problem says enough.
    broken: dict[tuple[str, str, str], pd.Series] = {}
    for rule in rules:
        at = (rule.column, rule.problem, rule.fix)
        broken[at] = broken[at] | rule.rows if at in broken else rule.rows
    for (column, problem, fix), rows in broken.items():
        if rows.any():
            examples = row_examples(raw, rows, [*key, used["ds"], column])
            raise DataError(
                f"{cfg.path}: column {column!r}: {int(rows.sum())} of {len(raw)} rows {problem}, "
                f"e.g. {examples} (row 0 is the first data row). {fix}"
            )
    daily = values[list(PANEL_REQUIRED)].assign(
        price=values["price"] if "price" in values else np.nan,
        **{role: values[role].fillna(0.0) if role in values else 0.0 for role in FLAGS},
    )
    log.info(
        "panel input: %d rows, %d series%s",
        len(daily),
        daily["unique_id"].nunique(),
        f" over {raw[used['location']].nunique()} locations" if "location" in used else "",
    )
    return daily.sort_values(["unique_id", "ds"], ignore_index=True)


@dataclass(frozen=True)
class PanelRule:
    """One rule on a daily panel in the file's own column names, and the rows that break it. The GX
    gate states it as an expectation (`expects`); the adapter, as an error (`problem`, `fix`)."""

    flag: str  # the gate's derived column
    column: str  # the file's column the rule is about
    rows: pd.Series  # bool, True where the rule is broken
    expects: str
    problem: str
    fix: str
    show: tuple[str, ...] = ()  # further columns whose values make useful examples


def panel_rules(raw: pd.DataFrame, used: dict[str, str]) -> tuple[pd.DataFrame, list[PanelRule]]:
    """Every rule on the panel's mapped columns (`used`, role -> column; a missing column is the
    caller's to report), in the order they are reported, and the values parsed by role (NaN where
    one does not parse). `raw` is indexed 0..n-1."""
    values, rules = pd.DataFrame(index=raw.index), []

    def rule(flag: str, column: str, rows: pd.Series, expects: str, problem: str, fix: str, show=()) -> None:
        rules.append(PanelRule(flag, column, rows, expects, problem, fix, tuple(show)))

    for col in [used[r] for r in ("unique_id", "location") if r in used]:
        rule(
            f"_{col}_missing",
            col,
            raw[col].isna(),
            f"{col} has a value on every row",
            "have no value",
            "Every row needs its series id (and location).",
        )
    if "unique_id" in used:
        values["unique_id"] = series_ids(raw, used)
    if "ds" in used:
        col, fix = used["ds"], "Write dates in one format, e.g. YYYY-MM-DD."
        values["ds"] = days = parse_days(raw[col])
        rule("_ds_missing", col, raw[col].isna(), f"{col} has a value on every row", "are missing or not a date", fix)
        rule(
            "_ds_unparseable",
            col,
            raw[col].notna() & days.isna(),
            f"{col} values parse as dates (one format, e.g. YYYY-MM-DD)",
            "are missing or not a date",
            fix,
        )
    if "y" in used:
        col, fix = used["y"], "Give every row its units demanded; write 0 for days without sales."
        values["y"] = y = parse_number(raw[col])
        rule(
            "_y_missing",
            col,
            raw[col].isna(),
            f"{col} (demand) has a value on every row; 0 for no sales",
            "are missing or not a number",
            fix,
        )
        rule(
            "_y_not_number",
            col,
            raw[col].notna() & y.isna(),
            f"{col} (demand) values are numbers",
            "are missing or not a number",
            fix,
            [col],
        )
        rule(
            "_y_negative",
            col,
            y < 0,
            f"{col} (demand) is not negative",
            "are negative",
            "Demand cannot be negative: net returns out first.",
            [col],
        )
    if "unique_id" in used and "ds" in used:
        ids = values["unique_id"]
        repeated = ids.notna() & days.notna() & pd.DataFrame({"id": ids, "ds": days}).duplicated(keep=False)
        rule(
            "_duplicate_series_day",
            used["ds"],
            repeated,
            "one row per series and day (sum sub-daily rows; map data.panel_columns.location when ids repeat across stores)",
            "repeat a (series, day) pair",
            "Give each series one row per day: sum sub-daily rows, or map the location column.",
            [used["y"]] if "y" in used else [],
        )
    if "price" in used:
        col = used["price"]
        values["price"] = price = parse_number(raw[col])
        rule(
            "_price_invalid",
            col,
            raw[col].notna() & ~(price > 0),
            f"{col} is a number > 0 where given",
            "are not a positive number",
            "Leave a price empty where it is unknown.",
            [col],
        )
    for role in FLAGS:
        if role in used:
            col = used[role]
            values[role] = flag = parse_flag(raw[col])
            rule(
                f"_{role}_invalid",
                col,
                raw[col].notna() & flag.isna(),
                f"{col} is 0/1 or true/false",
                "are not 0/1 or true/false",
                f"Mark {role} days with 1 (or true), other days with 0.",
                [col],
            )
    return values, rules


def build_panel(daily: pd.DataFrame, cfg: FeatureConfig) -> pd.DataFrame:
    """Every calendar day from each selected series' first sale to the data's last day, zero-filled,
    as `unique_id, ds, y, price, promo, event` (floats).

    Price on days without one: the series' last price, before its first the first one, 1.0 for a
    series (or input) without prices. Promo is 0 on filled days; event takes the day's value when
    all the input's rows that day agree (a calendar event), else 0.
    """
    daily = daily.assign(ds=daily["ds"].astype("datetime64[ns]"))
    end = daily["ds"].max()
    sold = daily[daily["y"] > 0]
    selling_days = sold.groupby("unique_id")["ds"].nunique()
    keep = selling_days[selling_days >= cfg.min_selling_days].index
    if cfg.max_series is not None:
        volume = sold[sold["unique_id"].isin(keep)].groupby("unique_id")["y"].sum()
        keep = volume.nlargest(cfg.max_series).index
    if keep.empty:
        raise DataError(f"no series has >= {cfg.min_selling_days} selling days; lower features.min_selling_days")
    first = sold[sold["unique_id"].isin(keep)].groupby("unique_id")["ds"].min()
    length = ((end - first).dt.days + 1).to_numpy()
    offset = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    index = pd.MultiIndex.from_arrays(
        [np.repeat(first.index.to_numpy(), length), np.repeat(first.to_numpy(), length) + pd.to_timedelta(offset, unit="D")],
        names=["unique_id", "ds"],
    )
    rows = daily[daily["unique_id"].isin(keep)].set_index(["unique_id", "ds"])
    panel = rows.reindex(index, columns=[c for c in DAILY_COLUMNS[2:] if c in rows])
    panel["y"] = panel["y"].fillna(0.0)
    if "price" in panel:
        by_series = panel["price"].groupby(level="unique_id")
        panel["price"] = by_series.ffill().groupby(level="unique_id").bfill().fillna(1.0)
    else:
        panel["price"] = 1.0
    panel["promo"] = panel["promo"].fillna(0.0) if "promo" in panel else 0.0
    if "event" in panel:
        day = daily.groupby("ds")["event"].agg(["min", "max"])
        calendar = day["max"].where(day["min"] == day["max"], 0.0)
        days = panel.index.get_level_values("ds")
        panel["event"] = panel["event"].fillna(pd.Series(calendar.reindex(days).fillna(0.0).to_numpy(), index=panel.index))
    else:
        panel["event"] = 0.0
    panel = panel.reset_index()[DAILY_COLUMNS].astype({c: float for c in DAILY_COLUMNS[2:]})
    log.info(
        "panel: %d series, %d rows, %s .. %s", panel["unique_id"].nunique(), len(panel), panel["ds"].min().date(), end.date()
    )
    return panel


def days_needed(held_out: int, horizon: int, origins: int, step_days: int) -> int:
    """Days of history a run needs: `held_out` origins of a horizon, validation origins `step_days` apart
    whose last one ends at the cutoff, and one horizon before the first of them to fit on."""
    return held_out * horizon + (horizon + step_days * (origins - 1)) + horizon


def plan(cfg: Config, days: int, held_out: int | None = None) -> Config:
    """The configuration `days` of history allow (a young shop's few months). The held-out origins
    (`held_out`, default features.test_origins) stay: they are the gate's evidence. Where the settings
    need more days, selection.origins is lowered (to 2), then features.horizon in steps of a week, not
    below the days an order covers (lead time + review period); tuning's val_days follows the horizon.
    Below that, a DataError in one sentence."""
    f, sel, inv = cfg.features, cfg.selection, cfg.inventory
    held_out = f.test_origins if held_out is None else held_out
    floor = min(f.horizon, inv.lead_time + inv.review_period)
    for h in [*range(f.horizon, floor, -7), floor]:
        for k in range(sel.origins, min(2, sel.origins) - 1, -1):
            if days_needed(held_out, h, k, sel.step_days) > days:
                continue
            if (h, k) != (f.horizon, sel.origins):
                log.warning(
                    "the data has %d days of history, fewer than the %d these settings need: using "
                    "features.horizon=%d and selection.origins=%d",
                    days,
                    days_needed(held_out, f.horizon, sel.origins, sel.step_days),
                    h,
                    k,
                )
            return cfg.model_copy(
                update={
                    "features": f.model_copy(update={"horizon": h, "val_days": min(f.val_days, h)}),
                    "selection": sel.model_copy(update={"origins": k}),
                }
            )
    least = days_needed(held_out, floor, min(2, sel.origins), sel.step_days)
    raise DataError(
        f"the data has {days} days of history and the pipeline needs at least {least} ({held_out} held-out "
        f"origins of {floor} days, the lead time + review period an order covers, plus validation and "
        f"fitting days): lower features.test_origins or inventory.review_period, or use a longer history"
    )


def history_days(ds: pd.Series) -> int:
    """Calendar days from the first to the last day in `ds`."""
    return int((ds.max() - ds.min()).days) + 1 if len(ds) else 0


@dataclass(frozen=True)
class Split:
    """Time-based cut: train < val_start <= val < test_start <= test. The test days are
    `features.test_origins` held-out origins of a horizon each: nothing is tuned, chosen or fitted on them."""

    val_start: pd.Timestamp
    test_start: pd.Timestamp
    end: pd.Timestamp
    horizon: int = 28

    @classmethod
    def from_panel(cls, panel: pd.DataFrame, cfg: FeatureConfig) -> Split:
        end = panel["ds"].max()
        test_start = end - pd.Timedelta(days=cfg.horizon * cfg.test_origins - 1)
        return cls(test_start - pd.Timedelta(days=cfg.val_days), test_start, end, cfg.horizon)

    def origins(self) -> list[pd.Timestamp]:
        """First day of each held-out origin, oldest first."""
        return list(pd.date_range(self.test_start, self.end - pd.Timedelta(days=self.horizon - 1), freq=f"{self.horizon}D"))

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
