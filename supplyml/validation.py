"""Validate: Great Expectations suites that gate the raw input (order lines or a daily panel, in the
file's own column names) and the daily demand panel that featurize builds from it.

Checks that pandas cannot express as a plain column test (does a date parse, is a line a duplicate,
is a day missing) run on derived columns added to a copy of the frame; their expectations carry
`meta.column` (the user's column) and `meta.show` (columns whose values make useful examples).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.checkpoint import UpdateDataDocsAction, ValidationAction
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from supplyml.columns import FLAGS, PANEL_REQUIRED
from supplyml.config import Config, DataConfig
from supplyml.data import DataError, explicit_panel_columns, panel_mapping, read_table
from supplyml.features import build_panel, panel_rules, to_daily

log = logging.getLogger(__name__)

MAX_EXAMPLES = 5
INT_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "Int8", "Int16", "Int32", "Int64"]
NUMBER_TYPES = INT_TYPES + ["float16", "float32", "float64", "Float32", "Float64"]
DATETIME_TYPES = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"]
STRING_TYPES = ["str", "object", "string"]

# GX's INFO chatter (metric registry, docs builder) would drown the pipeline's own log lines.
logging.getLogger("great_expectations").setLevel(logging.WARNING)


@dataclass
class ValidationReport:
    suite: str
    success: bool
    failures: list[dict] = field(default_factory=list)
    evaluated: int = 0
    docs_path: str | None = None
    source: str | None = None  # the file the data came from, when there is one

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        head = (
            f"suite {self.suite!r}"
            + (f" on {self.source}" if self.source else "")
            + ": "
            + (
                f"passed ({self.evaluated} expectations)"
                if self.success
                else f"{len(self.failures)} of {self.evaluated} expectations failed"
            )
        )
        lines = [head]
        for f in self.failures:
            where = f"column {f['column']!r}" if f["column"] else "table"
            lines.append(f"  - {f['expectation']} on {where}: {f['details']}")
            if f["examples"]:
                lines.append(f"      examples: {f['examples']}")
        if self.docs_path:
            lines.append(f"  Data Docs: {self.docs_path}")
        return "\n".join(lines)


class DataValidationError(DataError):
    """Raised when a suite fails. str(e) lists each failed expectation with column and example
    unexpected values."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(
            report.summary() + "\nFix the data (or the column mapping in config: data.columns for order lines, "
            "data.panel_columns for a panel) and run again."
        )


def check(report: ValidationReport) -> ValidationReport:
    if not report.success:
        raise DataValidationError(report)
    return report


# ---------------------------------------------------------------- raw order lines


def validate_raw(
    df: pd.DataFrame, cfg: DataConfig, docs_dir: str | Path | None = None, now: pd.Timestamp | None = None
) -> ValidationReport:
    """Gate the raw input as read from `cfg.path`: order lines, or a daily panel when
    `cfg.format == "panel"`. Failures name the file's own columns and show example rows."""
    if cfg.format == "panel":
        return validate_panel_input(df, cfg, docs_dir, now)
    return validate_order_lines(df, cfg, docs_dir, now)


def validate_order_lines(
    df: pd.DataFrame, cfg: DataConfig, docs_dir: str | Path | None = None, now: pd.Timestamp | None = None
) -> ValidationReport:
    """Gate the raw order lines. Cancellations, returns, zero prices and missing customers are real
    and pass: cleaning handles them. Missing columns, text in numbers, bad or future dates and a
    broken export (too many duplicated lines) fail."""
    c = cfg.columns
    now = pd.Timestamp.now() if now is None else pd.Timestamp(now)
    data = df.reset_index(drop=True)  # a copy: derived columns never reach the caller
    present = set(data.columns)

    required = [col for col in (c.invoice, c.sku, c.quantity, c.date, c.price) if col]  # the rest are optional
    if c.invoice is None:
        log.info(
            "data.columns.invoice is null: cancellations are still netted by their negative quantities, and "
            "a customer's purchases on one day count as one order"
        )
    exps: list[gxe.Expectation] = [gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    exps += [gxe.ExpectColumnToExist(column=col) for col in required]
    # Per-column checks only for columns that exist: a missing column is already one clear failure.
    for col in (c.invoice, c.sku, c.date):  # None (no invoice column) is never present
        if col is not None and col in present:
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col))
    if c.location:  # one series per (SKU, location): every line needs its location
        exps.append(
            gxe.ExpectColumnToExist(column=c.location, description=f"{c.location} (data.columns.location) is in the file")
        )
        if c.location in present:
            data["_location_missing"] = data[c.location].isna()
            exps.append(
                _flag_is_false(
                    "_location_missing",
                    c.location,
                    [col for col in (c.invoice, c.sku, c.location) if col],
                    f"{c.location} has a value on every line",
                )
            )
    if c.quantity in present:
        num = pd.to_numeric(data[c.quantity], errors="coerce")
        data["_quantity_not_integer"] = data[c.quantity].notna() & (num.isna() | (num % 1 != 0))
        exps += [
            gxe.ExpectColumnValuesToBeInTypeList(
                column=c.quantity, type_list=INT_TYPES, description=f"{c.quantity} has an integer dtype"
            ),
            _flag_is_false("_quantity_not_integer", c.quantity, [c.quantity], f"{c.quantity} values are whole numbers"),
        ]
    if c.price in present:
        data["_price_not_number"] = data[c.price].notna() & pd.to_numeric(data[c.price], errors="coerce").isna()
        exps += [
            gxe.ExpectColumnValuesToBeInTypeList(
                column=c.price, type_list=NUMBER_TYPES, description=f"{c.price} has a numeric dtype"
            ),
            _flag_is_false("_price_not_number", c.price, [c.price], f"{c.price} values are numbers"),
        ]
    if c.date in present:
        # Format inferred from the first value, as featurize will; unparseable -> NaT. utc=True
        # copes with offsets (even mixed ones) and leaves naive times as they are, once made naive.
        ts = pd.to_datetime(data[c.date], errors="coerce", utc=True).dt.tz_convert(None)
        now = now.tz_convert(None) if now.tz else now
        data["_date_ts"] = ts
        data["_date_unparseable"] = data[c.date].notna() & ts.isna()
        exps += [
            _flag_is_false("_date_unparseable", c.date, [c.date], f"{c.date} values parse as timestamps"),
            gxe.ExpectColumnValuesToBeBetween(
                column="_date_ts",
                max_value=now.to_pydatetime(),
                meta={"column": c.date, "show": [c.date]},
                description=f"{c.date} is not in the future (after {now:%Y-%m-%d %H:%M})",
            ),
        ]
    if set(required) <= present:
        # Exact duplicate lines: ~1% are real, more means a broken or doubled export. Only judged on
        # complete lines: without, say, Quantity, distinct lines would look like duplicates.
        data["_duplicate_line"] = df.duplicated(keep="first").to_numpy()
        exps.append(
            _flag_is_false(
                "_duplicate_line",
                None,
                [col for col in (c.invoice, c.sku, c.quantity, c.date) if col],
                "lines are not exact duplicates of an earlier line",
                mostly=1 - cfg.max_duplicate_fraction,
            )
        )
    return _run("raw_order_lines", data, exps, docs_dir, source=cfg.path)


# ---------------------------------------------------------------- raw daily panel


def validate_panel_input(
    df: pd.DataFrame, cfg: DataConfig, docs_dir: str | Path | None = None, now: pd.Timestamp | None = None
) -> ValidationReport:
    """Gate a daily panel in its own column names (`data.panel_columns`): id, date and demand on every
    row; dates that parse and are not in the future; demand a number >= 0; one row per series and
    day; price > 0 where given; promo and event 0/1 or booleans. Optional columns the user mapped
    to a name of their own must exist. Examples carry `row`, counting data rows from 0."""
    now = pd.Timestamp.now() if now is None else pd.Timestamp(now)
    now = now.tz_convert(None) if now.tz else now
    pc = cfg.panel_columns
    data = df.reset_index(drop=True)
    used, _ = panel_mapping(pc, data.columns)
    must_exist = [*PANEL_REQUIRED, *sorted(explicit_panel_columns(pc))]
    exps: list[gxe.Expectation] = [gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    exps += [
        gxe.ExpectColumnToExist(
            column=getattr(pc, role), description=f"{getattr(pc, role)} (data.panel_columns.{role}) is in the file"
        )
        for role in must_exist
    ]

    values, rules = panel_rules(data, used)  # the adapter's rules (`features.panel_daily`), as expectations
    data["row"] = np.arange(len(data))
    key = [used[r] for r in ("unique_id", "location") if r in used]
    show = ["row", *key, *([used["ds"]] if "ds" in used else [])]
    for rule in rules:
        data[rule.flag] = rule.rows.to_numpy()
        exps.append(_flag_is_false(rule.flag, rule.column, [*show, *rule.show], rule.expects))
        if rule.flag == "_ds_unparseable":  # the gate alone also refuses days in the future
            data["_ds_day"] = values["ds"]
            exps.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column="_ds_day",
                    max_value=now.normalize().to_pydatetime(),
                    meta={"column": rule.column, "show": show},
                    description=f"{rule.column} is not in the future (after {now:%Y-%m-%d})",
                )
            )
    return _run("raw_daily_panel", data, exps, docs_dir, source=cfg.path)


# ---------------------------------------------------------------- daily demand panel


def validate_panel(
    panel: pd.DataFrame, docs_dir: str | Path | None = None, start: Any = None, end: Any = None
) -> ValidationReport:
    """Gate the daily panel `unique_id, ds, y[, price, promo, event]`: one row per series and day, no
    gaps; covariates, when there, complete, price > 0, promo and event 0/1."""
    data = panel.reset_index(drop=True)
    present = set(data.columns)
    exps: list[gxe.Expectation] = [gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    exps += [gxe.ExpectColumnToExist(column=col) for col in ("unique_id", "ds", "y")]
    if "unique_id" in present:
        exps += [
            gxe.ExpectColumnValuesToNotBeNull(column="unique_id"),
            gxe.ExpectColumnValuesToBeInTypeList(
                column="unique_id", type_list=STRING_TYPES, description="unique_id holds strings"
            ),
        ]
    if "y" in present:
        exps += [
            gxe.ExpectColumnValuesToNotBeNull(column="y"),
            gxe.ExpectColumnValuesToBeInTypeList(column="y", type_list=NUMBER_TYPES, description="y has a numeric dtype"),
            gxe.ExpectColumnValuesToBeBetween(column="y", min_value=0),
        ]
    if "price" in present:
        exps += [
            gxe.ExpectColumnValuesToBeInTypeList(column="price", type_list=NUMBER_TYPES, description="price has a numeric dtype"),
            gxe.ExpectColumnValuesToNotBeNull(column="price"),
            gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, strict_min=True),
        ]
    for col in FLAGS:
        if col in present:
            exps += [
                gxe.ExpectColumnValuesToNotBeNull(column=col),
                gxe.ExpectColumnValuesToBeInSet(column=col, value_set=[0, 1], description=f"{col} is 0 or 1"),
            ]
    if "ds" in present:
        exps += [
            gxe.ExpectColumnValuesToNotBeNull(column="ds"),
            gxe.ExpectColumnValuesToBeInTypeList(column="ds", type_list=DATETIME_TYPES, description="ds has a datetime64 dtype"),
        ]
        if start is not None or end is not None:
            exps.append(gxe.ExpectColumnValuesToBeBetween(column="ds", min_value=_day(start), max_value=_day(end)))
    if {"unique_id", "ds"} <= present:
        exps.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=["unique_id", "ds"]))
        if pd.api.types.is_datetime64_any_dtype(data["ds"]):
            # Days since the previous row of the same series (in date order); a series' first row is 1.
            order = data.sort_values(["unique_id", "ds"], kind="stable")
            gap = order.groupby("unique_id", sort=False)["ds"].diff().dt.days.fillna(1)
            data["_gap_days"] = gap.reindex(data.index).astype(int)
            exps.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column="_gap_days",
                    value_set=[1],
                    meta={"column": "ds", "show": ["unique_id", "ds", "_gap_days"]},
                    description="each series has one row per day, without gaps",
                )
            )
    return _run("daily_panel", data, exps, docs_dir)


# ---------------------------------------------------------------- GX plumbing


def _flag_is_false(flag: str, column: str | None, show: list[str], description: str, mostly: float = 1.0) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeInSet(
        column=flag, value_set=[False], mostly=mostly, meta={"column": column, "show": show}, description=description
    )


def _day(value: Any) -> Any:
    return None if value is None else pd.Timestamp(value).to_pydatetime()


def _run(
    suite_name: str, data: pd.DataFrame, exps: list, docs_dir: str | Path | None, source: str | None = None
) -> ValidationReport:
    # In-memory stores; the only docs site is ours (the default one would go to a temp dir).
    sites: dict[str, dict] = {}
    actions: list[ValidationAction] = []
    if docs_dir is not None:
        docs_dir = Path(docs_dir).resolve()
        sites["supplyml"] = {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
        actions.append(UpdateDataDocsAction(name="data_docs", site_names=["supplyml"]))
    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            data_docs_sites=sites,
            progress_bars=ProgressBarsConfig(globally=False),
        ),
    )

    batch_def = (
        context.data_sources.add_pandas("supplyml").add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=exps))
    vdef = context.validation_definitions.add(gx.ValidationDefinition(name=suite_name, data=batch_def, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=suite_name,
            validation_definitions=[vdef],
            actions=actions,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": data})

    (vres,) = result.run_results.values()
    failures = [_failure(r, data) for r in vres.results if not r.success]
    docs_path = str(docs_dir / "index.html") if docs_dir is not None else None
    report = ValidationReport(
        suite=suite_name,
        success=bool(result.success),
        failures=failures,
        evaluated=int(vres.statistics["evaluated_expectations"]),
        docs_path=docs_path,
        source=source,
    )
    if report.success:
        log.info("%s", report.summary())
    else:
        log.warning("%s", report.summary())
    return report


def _failure(r, data: pd.DataFrame) -> dict:
    cfg = r.expectation_config
    meta = cfg.meta or {}
    column = meta["column"] if "column" in meta else cfg.kwargs.get("column")
    if cfg.kwargs.get("column_list"):
        column = ", ".join(cfg.kwargs["column_list"])
    res = r.result or {}
    error = _exception_message(r.exception_info or {})
    if error:
        details = f"could not be evaluated: {error}"
    elif cfg.type == "expect_column_values_to_be_in_type_list" and column in data:
        details = f"dtype is {data[column].dtype}"
    elif "unexpected_count" in res:
        details = (
            f"{res['unexpected_count']} of {res['element_count']} rows ({res.get('unexpected_percent') or 0:.2f}%) unexpected"
        )
        if cfg.kwargs.get("mostly", 1) < 1:
            details += f", at most {100 * (1 - cfg.kwargs['mostly']):.2f}% allowed"
    elif cfg.type == "expect_column_to_exist":
        details = "column is missing"
    else:
        details = f"observed {_plain(res.get('observed_value'))}"
    if cfg.description:
        details = f"{cfg.description}: {details}"

    show = meta.get("show")
    index = res.get("partial_unexpected_index_list")
    if show and index is not None:  # derived column: show the user's values from those rows
        rows = data.loc[index[:MAX_EXAMPLES], show]
        examples = (
            [_plain(v) for v in rows.iloc[:, 0]]
            if len(show) == 1
            else [{k: _plain(v) for k, v in row.items()} for row in rows.to_dict("records")]
        )
    else:
        examples = [_plain(v) for v in (res.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]]
    return {"expectation": cfg.type, "column": column, "details": details, "examples": examples}


def _exception_message(info: dict) -> str | None:
    # Flat for the expectation itself; keyed by metric id when one of its metrics raised.
    for item in [info, *(v for v in info.values() if isinstance(v, dict))]:
        if item.get("raised_exception"):
            return str(item.get("exception_message")).strip().splitlines()[0]
    return None


def _plain(value: Any) -> Any:
    """JSON-able form of a value GX or pandas hands back."""
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(pd.Timestamp(value))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def gated_panel(raw: pd.DataFrame, cfg: Config, docs_dir: str | Path | None = None) -> pd.DataFrame:
    """The daily panel of gated input `raw`, itself gated by the strict panel suite before anything
    trains on it (the pipeline's featurize step)."""
    panel = build_panel(to_daily(raw, cfg.data), cfg.features)
    check(validate_panel(panel, docs_dir=docs_dir))  # logs its summary
    return panel


def load_panel(cfg: Config, docs_dir: str | Path | None = None) -> pd.DataFrame:
    """Read, gate and featurize the configured data, as the pipeline's ingest, validate and featurize
    steps do (the bench, the monitor and the benchmarks start here)."""
    raw = read_table(cfg.data.path, cfg.data)
    check(validate_raw(raw, cfg.data, docs_dir=docs_dir))
    return gated_panel(raw, cfg, docs_dir)
