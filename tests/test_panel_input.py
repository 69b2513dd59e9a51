"""Bring your own data: daily panels in the file's own column names, CSV or Parquet, through the
adapter, the GX gate and the pipeline's first three steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, rejected

from supplyml.config import load_config
from supplyml.data import DataError, read_table
from supplyml.features import build_panel, panel_daily, to_daily
from supplyml.validation import (
    DataValidationError,
    ValidationReport,
    check,
    validate_raw,
)

MAPPING = [
    "data.format=panel",
    "data.panel_columns.unique_id=item",
    "data.panel_columns.ds=date",
    "data.panel_columns.y=units",
    "data.panel_columns.price=unit_price",
    "data.panel_columns.promo=on_promo",
    "data.panel_columns.event=holiday",
    "data.panel_columns.location=store",
]
COLUMNS = ["date", "store", "item", "units", "unit_price", "on_promo", "holiday"]
ONE_DAY_ENOUGH = {"min_selling_days": 1}


def config(*overrides: str, path: str = "shop.csv"):
    return load_config(overrides=[*overrides, f"data.path={path}"])


def shop() -> pd.DataFrame:
    """Two stores; item 007 sells in both, item 12 in S1 only (after a day without sales)."""
    return pd.DataFrame(
        [
            ("2021-03-01", "S1", "007", 2, 1.5, 0, 0),
            ("2021-03-03", "S1", "007", 5, None, 1, 1),  # no price given: the last one (1.5) carries over
            ("2021-03-02", "S2", "007", 1, 2.0, 0, 0),
            ("2021-03-02", "S1", "12", 0, 3.0, 0, 0),  # before the first sale: dropped by build_panel
            ("2021-03-03", "S1", "12", 4, 3.5, 1, 1),
        ],
        columns=COLUMNS,
    )


def written(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


EXPECTED = pd.DataFrame(
    {
        "unique_id": ["007@S1"] * 3 + ["007@S2"] * 2 + ["12@S1"],
        "ds": pd.to_datetime(["2021-03-01", "2021-03-02", "2021-03-03", "2021-03-02", "2021-03-03", "2021-03-03"]),
        "y": [2.0, 0.0, 5.0, 1.0, 0.0, 4.0],
        "price": [1.5, 1.5, 1.5, 2.0, 2.0, 3.5],
        "promo": [0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
        # Filled days take the day's event when every input row that day agrees: 03-02 none, 03-03 all.
        "event": [0.0, 0.0, 1.0, 0.0, 1.0, 1.0],
    }
)


# ---------------------------------------------------------------- the adapter


@pytest.mark.parametrize("name", ["shop.csv", "shop.csv.gz", "shop.parquet"])
def test_mapped_panel_from_csv_and_parquet(tmp_path, name):
    path = written(shop(), tmp_path / name)
    cfg = config(*MAPPING, path=str(path))
    raw = read_table(path, cfg.data)
    assert raw["item"].tolist() == ["007", "007", "007", "12", "12"]  # ids stay text: 007, not 7

    daily = to_daily(raw, cfg.data)
    assert list(daily.columns) == ["unique_id", "ds", "y", "price", "promo", "event"]
    assert daily["unique_id"].tolist() == ["007@S1", "007@S1", "007@S2", "12@S1", "12@S1"]
    assert np.isnan(daily.loc[1, "price"])  # build_panel fills it, not the adapter

    panel = build_panel(daily, cfg.features.model_copy(update=ONE_DAY_ENOUGH))
    pd.testing.assert_frame_equal(panel, EXPECTED)


def test_location_makes_one_series_per_sku_and_location():
    cfg = config(*MAPPING)
    raw = shop().astype({"store": str})
    daily = to_daily(raw, cfg.data)
    assert sorted(daily["unique_id"].unique()) == ["007@S1", "007@S2", "12@S1"]
    # The same item on the same day in another store is not a duplicate: it is another series.
    both = pd.concat([raw, raw.assign(store="S3")], ignore_index=True)
    assert sorted(to_daily(both, cfg.data)["unique_id"].unique()) == ["007@S1", "007@S2", "007@S3", "12@S1", "12@S3"]


def test_panel_named_unique_id_ds_y_needs_no_mapping(tmp_path):
    path = tmp_path / "panel.csv"
    path.write_text("unique_id,ds,y\n00042,2021-01-01,3\n00042,2021-01-03,1\n7,2021-01-02,2.5\n")
    cfg = config("data.format=panel", path=str(path))
    daily = to_daily(read_table(path, cfg.data), cfg.data)
    panel = build_panel(daily, cfg.features.model_copy(update=ONE_DAY_ENOUGH))
    assert panel["unique_id"].tolist() == ["00042"] * 3 + ["7"] * 2
    assert panel["y"].tolist() == [3.0, 0.0, 1.0, 2.5, 0.0]
    assert (panel["price"] == 1.0).all() and (panel["promo"] == 0.0).all() and (panel["event"] == 0.0).all()
    assert panel.dtypes.astype(str).to_dict() == {
        "unique_id": "object",
        "ds": "datetime64[ns]",
        "y": "float64",
        "price": "float64",
        "promo": "float64",
        "event": "float64",
    }


def test_flags_accept_booleans_and_treat_missing_as_zero(tmp_path):
    path = tmp_path / "panel.csv"
    path.write_text(
        "unique_id,ds,y,promo,event\nA,2021-01-01,1,true,\nA,2021-01-02,2,,TRUE\nA,2021-01-03 10:30:00,3,false,false\n"
    )  # a time of day counts on its day
    cfg = config("data.format=panel", path=str(path))
    daily = to_daily(read_table(path, cfg.data), cfg.data)
    assert daily["promo"].tolist() == [1.0, 0.0, 0.0]
    assert daily["event"].tolist() == [0.0, 1.0, 0.0]
    assert daily["ds"].tolist() == list(pd.date_range("2021-01-01", periods=3))


def test_zero_demand_rows_keep_their_covariates():
    raw = pd.DataFrame(
        {
            "unique_id": "A",
            "ds": pd.date_range("2021-01-01", periods=4),
            "y": [1.0, 0.0, 0.0, 2.0],
            "price": [2.0, 2.5, None, 3.0],
            "promo": [0, 1, 0, 0],
        }
    )
    cfg = config("data.format=panel")
    panel = build_panel(to_daily(raw, cfg.data), cfg.features.model_copy(update=ONE_DAY_ENOUGH))
    assert panel["price"].tolist() == [2.0, 2.5, 2.5, 3.0]  # the zero day's own price, then carried
    assert panel["promo"].tolist() == [0.0, 1.0, 0.0, 0.0]  # a promotion on a day without sales stays


def test_default_named_optional_columns_are_used_only_when_present():
    cfg = config("data.format=panel")
    raw = pd.DataFrame({"unique_id": ["A"], "ds": ["2021-01-01"], "y": [1], "price": [9.0], "location": ["X"]})
    daily = to_daily(raw, cfg.data)
    assert daily["unique_id"].tolist() == ["A@X"] and daily["price"].tolist() == [9.0]
    assert to_daily(raw.drop(columns=["price", "location"]), cfg.data)["unique_id"].tolist() == ["A"]


def test_explicitly_mapped_column_must_exist():
    cfg = config(*MAPPING)
    with pytest.raises(DataError, match=r"\['on_promo'\] not found.*data\.panel_columns\.<role>=<column>"):
        to_daily(shop().drop(columns=["on_promo"]), cfg.data)
    # Mapped to the default name counts as not mapped: absent means unused.
    assert "promo" in to_daily(
        shop().drop(columns=["on_promo"]),
        config(*MAPPING[:5], "data.panel_columns.promo=promo", "data.panel_columns.event=holiday").data,
    )


# ---------------------------------------------------------------- bad input: the GX gate


def gate(raw: pd.DataFrame, *overrides: str, **kw) -> ValidationReport:
    return validate_raw(raw, config(*(overrides or MAPPING), path="/shops/shop.csv").data, **kw)


def failure(report: ValidationReport, text: str) -> dict:
    (match,) = [f for f in report.failures if text in f["details"]]
    return match


def test_good_panel_passes_the_gate(tmp_path):
    report = check(gate(shop(), docs_dir=tmp_path / "docs"))
    assert report.suite == "raw_daily_panel" and report.failures == []
    # rows, 3 required + 4 mapped optional columns, 2 ids, 3 date, 3 demand, duplicates, price, 2 flags
    assert report.evaluated == 1 + 7 + 2 + 3 + 3 + 1 + 1 + 2
    assert report.source == "/shops/shop.csv" and Path(report.docs_path).exists()


def test_duplicated_series_day_is_rejected_with_examples():
    raw = pd.concat([shop(), shop().iloc[[1]].assign(units=7)], ignore_index=True)
    report = gate(raw)
    message = str(rejected(report))
    dup = failure(report, "one row per series and day")
    assert dup["column"] == "date" and "2 of 6 rows" in dup["details"]
    assert dup["examples"] == [
        {"row": 1, "item": "007", "store": "S1", "date": "2021-03-03", "units": 5},
        {"row": 5, "item": "007", "store": "S1", "date": "2021-03-03", "units": 7},
    ]
    assert len(report.failures) == 1
    assert "on /shops/shop.csv" in message and "data.panel_columns" in message and "'row': 5" in message


def test_same_day_in_another_format_is_still_a_duplicate():
    raw = pd.concat([shop(), shop().iloc[[0]].assign(date="2021-03-01 18:00:00")], ignore_index=True)
    assert [f["examples"][1]["row"] for f in gate(raw).failures] == [5]


def test_negative_and_missing_demand_are_rejected():
    raw = shop().astype({"units": float})
    raw.loc[2, "units"] = -3
    raw.loc[4, "units"] = None
    report = gate(raw)
    rejected(report)
    assert failure(report, "is not negative")["examples"] == [
        {"row": 2, "item": "007", "store": "S2", "date": "2021-03-02", "units": -3.0}
    ]
    assert failure(report, "has a value on every row; 0 for no sales")["examples"] == [
        {"row": 4, "item": "12", "store": "S1", "date": "2021-03-03"}
    ]
    assert len(report.failures) == 2


def test_text_in_demand_is_rejected():
    raw = shop().astype({"units": object})
    raw.loc[0, "units"] = "two"
    report = gate(raw)
    rejected(report)
    assert failure(report, "values are numbers")["examples"][0]["units"] == "two"
    assert len(report.failures) == 1


def test_unparseable_and_future_dates_are_rejected():
    raw = shop()
    raw.loc[[1, 3], "date"] = ["03/01/2021", "yesterday"]  # another format; no date at all
    raw.loc[4, "date"] = "2031-01-01"
    report = gate(raw, now=pd.Timestamp("2025-06-01"))
    message = str(rejected(report))
    bad = failure(report, "values parse as dates")
    assert bad["column"] == "date" and [e["date"] for e in bad["examples"]] == ["03/01/2021", "yesterday"]
    future = failure(report, "is not in the future (after 2025-06-01)")
    assert future["examples"] == [{"row": 4, "item": "12", "store": "S1", "date": "2031-01-01"}]
    assert len(report.failures) == 2 and "yesterday" in message


def test_promo_event_and_price_values_are_checked():
    raw = shop().astype({"on_promo": object, "holiday": object})
    raw.loc[0, "on_promo"] = "yes"
    raw.loc[2, "holiday"] = 2
    raw.loc[[3, 4], "unit_price"] = [0.0, -1.0]
    report = gate(raw)
    rejected(report)
    assert failure(report, "on_promo is 0/1")["examples"][0]["on_promo"] == "yes"
    assert failure(report, "holiday is 0/1")["examples"][0]["holiday"] == 2
    price = failure(report, "unit_price is a number > 0 where given")
    assert [e["unit_price"] for e in price["examples"]] == [0.0, -1.0]
    assert len(report.failures) == 3  # the missing price on row 1 is allowed


def test_missing_ids_are_rejected():
    raw = shop()
    raw.loc[2, "store"] = None
    report = gate(raw)
    rejected(report)
    assert failure(report, "store has a value on every row")["examples"] == [
        {"row": 2, "item": "007", "store": None, "date": "2021-03-02"}
    ]


def test_missing_columns_name_the_config_key():
    report = gate(shop().drop(columns=["units", "holiday"]))
    message = str(rejected(report))
    assert {(f["column"], f["details"]) for f in report.failures} == {
        ("units", "units (data.panel_columns.y) is in the file: column is missing"),
        ("holiday", "holiday (data.panel_columns.event) is in the file: column is missing"),
    }
    assert "data.panel_columns.y" in message
    # Default-named optional columns that are absent are simply not checked.
    minimal = pd.DataFrame({"unique_id": ["A"], "ds": ["2021-01-01"], "y": [0]})
    assert check(gate(minimal, "data.format=panel")).evaluated == 1 + 3 + 1 + 3 + 3 + 1


def test_empty_panel_is_rejected():
    report = gate(pd.DataFrame(columns=COLUMNS))
    rejected(report)
    assert [f["expectation"] for f in report.failures] == ["expect_table_row_count_to_be_between"]


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda r: pd.concat([r, r.iloc[[0]]]), "'date': 2 of 6 rows repeat a \\(series, day\\) pair"),
        (lambda r: r.assign(units=r["units"] - 3), "'units': 3 of 5 rows are negative"),
        (
            lambda r: r.assign(date=["2021-03-01", "bad", "2021-03-02", "2021-03-02", "2021-03-03"]),
            "'date': 1 of 5 rows are missing or not a date, e.g. \\[\\{'row': 1, 'item': '007'",
        ),
        (lambda r: r.assign(on_promo=[0, 1, 0, 5, 0]), "'on_promo': 1 of 5 rows are not 0/1"),
        (lambda r: r.assign(unit_price=0.0), "'unit_price': 5 of 5 rows are not a positive number"),
    ],
)
def test_adapter_rejects_bad_input_without_the_gate(corrupt, message):
    """Code that calls to_daily directly (a benchmark) gets the same rules as clear errors."""
    with pytest.raises(DataError, match=f"shop.csv: column {message}"):
        panel_daily(corrupt(shop()), config(*MAPPING).data)


# ---------------------------------------------------------------- the pipeline's first steps


def test_steps_ingest_validate_featurize_on_a_file_outside_the_repo(tmp_path):
    from supplyml import steps

    path = written(shop(), tmp_path / "shop.parquet")
    # Three days of history are enough for one held-out day, one validation day and one to fit on.
    tiny = [
        "features.horizon=1",
        "features.val_days=1",
        "features.test_origins=1",
        "selection.origins=1",
        "inventory.lead_time=0",
        "inventory.review_period=1",
    ]
    cfg = config(*MAPPING, "features.min_selling_days=1", *tiny, path=str(path))
    version = steps.ingest(cfg, str(REPO), str(tmp_path / "raw.parquet"))
    assert version["data_path"] == str(path) and version["dvc_md5"].startswith("untracked:")
    assert steps.validate(cfg, str(tmp_path / "raw.parquet"), str(tmp_path / "docs"))["success"]
    summary = steps.featurize(cfg, str(tmp_path / "raw.parquet"), str(tmp_path / "panel.parquet"), str(tmp_path / "panel_docs"))
    assert summary["series"] == 3 and summary["rows"] == 6
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "panel.parquet"), EXPECTED)


def test_a_history_too_short_for_the_settings_stops_at_validate_in_one_sentence(tmp_path):
    from supplyml import steps

    path = written(shop(), tmp_path / "shop.parquet")
    cfg = config(*MAPPING, "features.min_selling_days=1", path=str(path))
    steps.ingest(cfg, str(REPO), str(tmp_path / "raw.parquet"))
    # 3 days (03-01 .. 03-03); the defaults at their smallest: 3 held-out origins of L + R = 3 + 7 days,
    # validation 10 + 7, fitting 10: 57.
    with pytest.raises(DataError) as e:
        steps.validate(cfg, str(tmp_path / "raw.parquet"), str(tmp_path / "docs"))
    assert str(e.value).startswith("the data has 3 days of history and the pipeline needs at least 57 ")
    assert "lower features.test_origins or inventory.review_period" in str(e.value) and str(e.value).count(". ") == 0


def test_bad_panel_stops_at_validate(tmp_path):
    from supplyml import steps

    path = written(pd.concat([shop(), shop().iloc[[4]]]), tmp_path / "shop.csv")
    cfg = config(*MAPPING, path=str(path))
    steps.ingest(cfg, str(REPO), str(tmp_path / "raw.parquet"))
    with pytest.raises(DataValidationError, match="(?s)on .*shop.csv.*one row per series and day.*'row': 5"):
        steps.validate(cfg, str(tmp_path / "raw.parquet"), str(tmp_path / "docs"))
