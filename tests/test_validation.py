"""Data tests: the GX suites on the real Online Retail file and on corrupted copies of it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import rejected

from supplyml.config import load_config
from supplyml.data import read_table
from supplyml.validation import ValidationReport, check, validate_panel, validate_raw

ROOT = Path(__file__).resolve().parents[1]
RAW_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]


def real_file() -> Path:
    # The DVC-tracked copy when the repo has it, else the shared one next to the repo.
    local = ROOT / "data" / "online_retail" / "online_retail.csv.gz"
    shared = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"
    return local if local.exists() else shared


@pytest.fixture(scope="module")
def cfg():
    return load_config().data


@pytest.fixture(scope="module")
def raw(cfg) -> pd.DataFrame:
    return read_table(real_file(), cfg)


@pytest.fixture(scope="module")
def head(raw) -> pd.DataFrame:
    return raw.head(20_000)


@pytest.fixture
def reread(tmp_path, cfg):
    """Write a corrupted copy to CSV and read it back the way ingest does."""

    def _reread(frame: pd.DataFrame) -> pd.DataFrame:
        path = tmp_path / "orders.csv"
        frame.to_csv(path, index=False)
        return read_table(path, cfg)

    return _reread


def failed(report: ValidationReport) -> set[tuple[str, str | None]]:
    return {(f["expectation"], f["column"]) for f in report.failures}


def failure(report: ValidationReport, expectation: str, column: str | None) -> dict:
    (match,) = [f for f in report.failures if (f["expectation"], f["column"]) == (expectation, column)]
    return match


# ---------------------------------------------------------------- raw suite, real file


def test_raw_suite_passes_on_real_file(raw, cfg, tmp_path):
    # The known facts the suite must tolerate: duplicates, cancellations, bad prices, no customer.
    assert len(raw) == 541_909
    assert raw.duplicated().sum() == 5_268
    assert raw["InvoiceNo"].str.startswith("C").sum() == 9_288
    assert (raw["UnitPrice"] <= 0).sum() == 2_517
    assert raw["CustomerID"].isna().sum() == 135_080

    report = check(validate_raw(raw, cfg, docs_dir=tmp_path / "docs"))

    assert report.success and report.failures == []
    assert report.evaluated == 16
    assert Path(report.docs_path) == tmp_path / "docs" / "index.html" and Path(report.docs_path).exists()
    assert list(raw.columns) == RAW_COLUMNS  # derived columns went to a copy only
    assert "passed (16 expectations)" in report.summary()


def test_now_bounds_the_dates(head, cfg):
    # The head spans 2010-12-01 .. 2010-12-09; with "now" on the 5th the later lines are in the future.
    report = validate_raw(head, cfg, now=pd.Timestamp("2010-12-05"))
    future = failure(report, "expect_column_values_to_be_between", "InvoiceDate")
    late = (pd.to_datetime(head["InvoiceDate"]) > "2010-12-05").sum()
    assert late == 12_581
    assert future["details"].startswith(f"InvoiceDate is not in the future (after 2010-12-05 00:00): {late} of 20000 rows")
    assert all(example > "2010-12-05" for example in future["examples"])
    assert failed(report) == {("expect_column_values_to_be_between", "InvoiceDate")}


# ---------------------------------------------------------------- raw suite, corrupted copies


def test_missing_column_is_rejected(head, cfg, reread):
    report = validate_raw(reread(head.drop(columns=["Quantity"])), cfg)
    error = rejected(report)
    assert failed(report) == {("expect_column_to_exist", "Quantity")}
    assert "expect_column_to_exist on column 'Quantity': column is missing" in str(error)


def test_text_in_quantity_is_rejected(head, cfg, reread):
    bad = head.astype({"Quantity": object})
    bad.loc[[3, 500, 9_000], "Quantity"] = "twelve"
    report = validate_raw(reread(bad), cfg)
    error = rejected(report)

    assert failed(report) == {
        ("expect_column_values_to_be_in_type_list", "Quantity"),
        ("expect_column_values_to_be_in_set", "Quantity"),
    }
    assert failure(report, "expect_column_values_to_be_in_type_list", "Quantity")["details"] == (
        "Quantity has an integer dtype: dtype is object"
    )
    text = failure(report, "expect_column_values_to_be_in_set", "Quantity")
    assert text["examples"] == ["twelve", "twelve", "twelve"]
    assert "3 of 20000 rows" in text["details"]
    assert "twelve" in str(error) and "twelve" in report.summary()


def test_fractional_quantity_is_rejected(head, cfg, reread):
    bad = head.astype({"Quantity": float})
    bad.loc[[20, 21], "Quantity"] = 2.5
    report = validate_raw(reread(bad), cfg)
    rejected(report)
    assert failure(report, "expect_column_values_to_be_in_type_list", "Quantity")["details"].endswith("dtype is float64")
    assert failure(report, "expect_column_values_to_be_in_set", "Quantity")["examples"] == [2.5, 2.5]


def test_text_in_price_is_rejected(head, cfg, reread):
    bad = head.astype({"UnitPrice": object})
    bad.loc[[10, 11], "UnitPrice"] = "n/a"
    bad.loc[[12], "UnitPrice"] = "£2.50"
    report = validate_raw(reread(bad), cfg)
    rejected(report)
    assert failed(report) == {
        ("expect_column_values_to_be_in_type_list", "UnitPrice"),
        ("expect_column_values_to_be_in_set", "UnitPrice"),
    }
    # read_csv turns "n/a" into a missing value; the pound sign stays text.
    assert failure(report, "expect_column_values_to_be_in_set", "UnitPrice")["examples"] == ["£2.50"]


def test_duplicated_lines_are_rejected(head, cfg, reread):
    # The head already holds 315 duplicate lines (1.6%); 1,000 more make 6.3%, over the 2% limit.
    assert head.duplicated().sum() == 315
    report = validate_raw(reread(pd.concat([head, head.sample(n=1_000, random_state=0)])), cfg)
    error = rejected(report)

    dup = failure(report, "expect_column_values_to_be_in_set", None)
    assert dup["details"] == (
        "lines are not exact duplicates of an earlier line: 1315 of 21000 rows (6.26%) unexpected, at most 2.00% allowed"
    )
    assert len(dup["examples"]) == 5
    assert set(dup["examples"][0]) == {"InvoiceNo", "StockCode", "Quantity", "InvoiceDate"}
    assert failed(report) == {("expect_column_values_to_be_in_set", None)}
    assert "duplicates" in str(error)


def test_duplicates_under_the_limit_pass(head, cfg, reread):
    # 315 + 40 = 355 of 20,040 lines (1.8%) stays under max_duplicate_fraction.
    report = validate_raw(reread(pd.concat([head, head.sample(n=40, random_state=0)])), cfg)
    assert check(report).success
    strict = cfg.model_copy(update={"max_duplicate_fraction": 0.01})
    assert failed(validate_raw(head, strict)) == {("expect_column_values_to_be_in_set", None)}


def test_future_dates_are_rejected(head, cfg, reread):
    bad = head.copy()
    bad.loc[[7, 70, 700], "InvoiceDate"] = "2031-03-04 10:00:00"
    report = validate_raw(reread(bad), cfg, now=pd.Timestamp("2025-01-01"))
    error = rejected(report)

    future = failure(report, "expect_column_values_to_be_between", "InvoiceDate")
    assert future["examples"] == ["2031-03-04 10:00:00"] * 3
    assert "3 of 20000 rows" in future["details"]
    assert failed(report) == {("expect_column_values_to_be_between", "InvoiceDate")}
    assert "2031-03-04 10:00:00" in str(error)


def test_unparseable_and_missing_dates_are_rejected(head, cfg, reread):
    bad = head.copy()
    bad.loc[[5, 6], "InvoiceDate"] = "not a date"
    bad.loc[[8], "InvoiceDate"] = None
    report = validate_raw(reread(bad), cfg)
    rejected(report)

    assert failed(report) == {
        ("expect_column_values_to_be_in_set", "InvoiceDate"),
        ("expect_column_values_to_not_be_null", "InvoiceDate"),
    }
    assert failure(report, "expect_column_values_to_be_in_set", "InvoiceDate")["examples"] == ["not a date", "not a date"]
    missing = failure(report, "expect_column_values_to_not_be_null", "InvoiceDate")
    assert "1 of 20000 rows" in missing["details"]


def test_empty_file_is_rejected_cleanly(tmp_path, cfg):
    path = tmp_path / "orders.csv"
    path.write_bytes(b"")
    frame = read_table(path, cfg)
    assert frame.shape == (0, 0)

    report = validate_raw(frame, cfg, docs_dir=tmp_path / "docs")
    error = rejected(report)
    assert failed(report) == {("expect_table_row_count_to_be_between", None)} | {
        ("expect_column_to_exist", col) for col in ["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice"]
    }
    assert failure(report, "expect_table_row_count_to_be_between", None)["details"] == "observed 0"
    assert "6 of 6 expectations failed" in str(error)
    assert Path(report.docs_path).exists()


def test_location_column_is_required_when_mapped(head, cfg):
    by_country = cfg.model_copy(update={"columns": cfg.columns.model_copy(update={"location": "Country"})})
    assert check(validate_raw(head, by_country)).evaluated == 18
    bad = head.copy()
    bad.loc[[4, 40], "Country"] = None
    report = validate_raw(bad, by_country)
    rejected(report)
    missing = failure(report, "expect_column_values_to_be_in_set", "Country")
    assert "2 of 20000 rows" in missing["details"]
    assert [e["Country"] for e in missing["examples"]] == [None, None]
    by_store = cfg.model_copy(update={"columns": cfg.columns.model_copy(update={"location": "Store"})})
    report = validate_raw(head, by_store)
    assert failed(report) == {("expect_column_to_exist", "Store")}
    assert "Store (data.columns.location) is in the file: column is missing" in report.summary()


def test_header_only_file_is_rejected(tmp_path, cfg):
    path = tmp_path / "orders.csv"
    path.write_text(",".join(RAW_COLUMNS) + "\n")
    report = validate_raw(read_table(path, cfg), cfg)
    rejected(report)
    assert failed(report) == {("expect_table_row_count_to_be_between", None)}


def test_report_is_json_and_caller_frame_untouched(head, cfg, reread):
    bad = head.copy()
    bad.loc[[1], "InvoiceDate"] = "2031-01-01 00:00:00"
    before = bad.copy()
    report = validate_raw(bad, cfg, now=pd.Timestamp("2025-01-01"))
    pd.testing.assert_frame_equal(bad, before)

    data = json.loads(json.dumps(report.to_dict()))
    assert data["suite"] == "raw_order_lines" and data["success"] is False
    assert data["evaluated"] == 16 and data["docs_path"] is None
    assert data["failures"] == [
        {
            "expectation": "expect_column_values_to_be_between",
            "column": "InvoiceDate",
            "details": ("InvoiceDate is not in the future (after 2025-01-01 00:00): 1 of 20000 rows (0.01%) unexpected"),
            "examples": ["2031-01-01 00:00:00"],
        }
    ]


def test_data_docs_written_for_failing_run(head, cfg, tmp_path):
    docs = tmp_path / "docs"
    report = validate_raw(head.drop(columns=["StockCode"]), cfg, docs_dir=docs)
    assert not report.success
    index = docs / "index.html"
    assert report.docs_path == str(index) and index.exists()
    assert "raw_order_lines" in index.read_text()
    (page,) = (docs / "validations" / "raw_order_lines").rglob("*.html")  # one page for this run
    html = page.read_text()
    assert "raw_order_lines" in html
    assert "Failed" in html and "StockCode" in html


# ---------------------------------------------------------------- panel suite


@pytest.fixture
def panel() -> pd.DataFrame:
    days = pd.date_range("2011-01-03", periods=5, freq="D")
    return pd.DataFrame(
        {
            "unique_id": ["85123A"] * 5 + ["22423"] * 5,
            "ds": list(days) * 2,
            "y": [6.0, 0.0, 12.0, 3.0, 0.0, 1.0, 2.0, 0.0, 0.0, 4.0],
            "price": [2.55] * 5 + [12.75] * 5,
        }
    )


def test_valid_panel_passes(panel, tmp_path):
    report = check(validate_panel(panel, docs_dir=tmp_path, start="2011-01-03", end="2011-01-07"))
    assert report.success and report.failures == []
    assert report.evaluated == 17
    assert Path(report.docs_path).exists()
    assert check(validate_panel(panel.drop(columns=["price"]))).evaluated == 13  # no price, no window
    # Covariates featurize adds: 0/1 flags, complete.
    flags = panel.assign(promo=[1.0, 0.0] * 5, event=0.0)
    assert check(validate_panel(flags)).evaluated == 16 + 4


def test_panel_covariates_out_of_range_are_rejected(panel):
    panel.loc[1, "price"] = 0.0
    panel.loc[2, "price"] = None
    report = validate_panel(panel.assign(promo=[0.0] * 9 + [2.0], event=[None] + [0.0] * 9))
    rejected(report)
    assert failed(report) == {
        ("expect_column_values_to_be_between", "price"),
        ("expect_column_values_to_not_be_null", "price"),
        ("expect_column_values_to_be_in_set", "promo"),
        ("expect_column_values_to_not_be_null", "event"),
    }
    assert failure(report, "expect_column_values_to_be_between", "price")["examples"] == [0.0]
    assert failure(report, "expect_column_values_to_be_in_set", "promo")["examples"] == [2.0]


def test_panel_duplicate_series_day_is_rejected(panel):
    report = validate_panel(pd.concat([panel, panel.iloc[[2]]]))
    rejected(report)
    dup = failure(report, "expect_compound_columns_to_be_unique", "unique_id, ds")
    assert dup["examples"] == [{"unique_id": "85123A", "ds": "2011-01-05 00:00:00"}] * 2
    # The repeated day also shows up as a zero-day gap.
    assert failed(report) == {
        ("expect_compound_columns_to_be_unique", "unique_id, ds"),
        ("expect_column_values_to_be_in_set", "ds"),
    }


def test_panel_negative_demand_is_rejected(panel):
    panel.loc[3, "y"] = -2.0
    report = validate_panel(panel)
    rejected(report)
    assert failed(report) == {("expect_column_values_to_be_between", "y")}
    assert failure(report, "expect_column_values_to_be_between", "y")["examples"] == [-2.0]


def test_panel_missing_demand_is_rejected(panel):
    panel.loc[4, "y"] = None
    report = validate_panel(panel)
    assert failed(report) == {("expect_column_values_to_not_be_null", "y")}


def test_panel_gap_day_is_rejected(panel):
    report = validate_panel(panel.drop(index=7))  # 22423 loses 2011-01-05
    rejected(report)
    gap = failure(report, "expect_column_values_to_be_in_set", "ds")
    assert gap["details"].startswith("each series has one row per day, without gaps: 1 of 9 rows")
    assert gap["examples"] == [{"unique_id": "22423", "ds": "2011-01-06 00:00:00", "_gap_days": 2}]
    assert failed(report) == {("expect_column_values_to_be_in_set", "ds")}


def test_panel_dates_outside_window_are_rejected(panel):
    report = validate_panel(panel, start="2011-01-04", end="2011-01-06")
    rejected(report)
    window = failure(report, "expect_column_values_to_be_between", "ds")
    assert "4 of 10 rows" in window["details"]
    assert sorted(window["examples"]) == ["2011-01-03 00:00:00"] * 2 + ["2011-01-07 00:00:00"] * 2
    assert failed(report) == {("expect_column_values_to_be_between", "ds")}


def test_panel_wrong_types_and_missing_columns_are_rejected(panel):
    report = validate_panel(panel.assign(ds=panel["ds"].dt.strftime("%Y-%m-%d")).drop(columns=["y"]))
    rejected(report)
    assert failed(report) == {("expect_column_to_exist", "y"), ("expect_column_values_to_be_in_type_list", "ds")}
    empty = validate_panel(pd.DataFrame())
    assert failed(empty) == {("expect_table_row_count_to_be_between", None)} | {
        ("expect_column_to_exist", col) for col in ["unique_id", "ds", "y"]
    }
