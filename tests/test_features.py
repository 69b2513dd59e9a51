"""Cleaning and panel rules on hand-made order lines."""

import numpy as np
import pandas as pd
import pytest

from supplyml.config import load_config
from supplyml.data import DataError
from supplyml.features import (
    Split,
    build_panel,
    calendar_features,
    daily_demand,
    to_daily,
)

CFG = load_config()


def lines(*rows):
    cols = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows])


def test_cancellation_offsets_only_its_own_customer_same_day():
    raw = lines(
        ("1", "A", "", 10, "2011-01-03 09:00:00", 2.0, 1.0, "UK"),
        ("2", "A", "", 5, "2011-01-03 10:00:00", 2.0, 2.0, "UK"),
        ("C3", "A", "", -10, "2011-01-03 11:00:00", 2.0, 1.0, "UK"),  # customer 1 cancels: 0 left
        ("C4", "A", "", -7, "2011-01-04 11:00:00", 2.0, 2.0, "UK"),  # later return: no negative demand
        ("5", "POST", "", 1, "2011-01-03 12:00:00", 18.0, 1.0, "UK"),  # postage is not demand
        ("6", "A", "", -3, "2011-01-03 12:00:00", 0.0, None, "UK"),  # stock adjustment at price 0
        ("7", "a", "", 4, "2011-01-04 12:00:00", 3.0, None, "UK"),  # same SKU, other case
    )
    daily = daily_demand(raw, CFG.data).set_index(["unique_id", "ds"])
    assert daily.loc[("A", pd.Timestamp("2011-01-03")), "y"] == 5
    assert daily.loc[("A", pd.Timestamp("2011-01-04")), "y"] == 4
    assert daily.loc[("A", pd.Timestamp("2011-01-04")), "price"] == 3.0
    assert "POST" not in daily.index.get_level_values("unique_id")


def test_location_column_makes_one_series_per_sku_and_location():
    raw = lines(
        ("1", "A", "", 10, "2011-01-03 09:00:00", 2.0, 1.0, "UK"),
        ("2", "A", "", 5, "2011-01-03 10:00:00", 4.0, 1.0, "FR"),
        ("C3", "A", "", -10, "2011-01-03 11:00:00", 2.0, 1.0, "FR"),  # offsets only FR's 5: none left
        ("4", "POST", "", 1, "2011-01-03 12:00:00", 18.0, 1.0, "UK"),  # postage is not demand anywhere
        ("5", "x1", "", 3, "2011-01-04 12:00:00", 1.0, 2.0, " UK "),  # ids: upper case, location stripped
    )
    cfg = CFG.data.model_copy(update={"columns": CFG.data.columns.model_copy(update={"location": "Country"})})
    daily = to_daily(raw, cfg)
    assert list(daily.columns) == ["unique_id", "ds", "y", "price", "promo", "event"]
    assert daily["unique_id"].tolist() == ["A@FR", "A@UK", "X1@UK"]
    assert daily["y"].tolist() == [0.0, 10.0, 3.0]
    assert daily["price"].tolist() == [4.0, 2.0, 1.0]
    assert (daily[["promo", "event"]] == 0.0).all().all()
    # Without the mapping the same lines make one series per SKU.
    assert daily_demand(raw, CFG.data).set_index("unique_id")["y"].to_dict() == {"A": 5.0, "X1": 3.0}


def test_missing_location_column_is_a_clear_error():
    cfg = CFG.data.model_copy(update={"columns": CFG.data.columns.model_copy(update={"location": "Store"})})
    raw = lines(("1", "A", "", 1, "2011-01-03 09:00:00", 2.0, 1.0, "UK"))
    with pytest.raises(DataError, match=r"\['Store'\] not found.*data\.columns\.<field>=<column>"):
        daily_demand(raw, cfg)


def test_panel_without_covariates_gets_price_one_and_zero_flags():
    daily = pd.DataFrame({"unique_id": ["A", "A"], "ds": pd.to_datetime(["2011-01-01", "2011-01-03"]), "y": [1.0, 2.0]})
    panel = build_panel(daily, CFG.features.model_copy(update={"min_selling_days": 1}))
    assert list(panel.columns) == ["unique_id", "ds", "y", "price", "promo", "event"]
    assert panel["y"].tolist() == [1.0, 0.0, 2.0]
    assert panel[["price", "promo", "event"]].to_numpy().tolist() == [[1.0, 0.0, 0.0]] * 3


def test_panel_zero_fills_from_first_sale_and_selects_series():
    daily = pd.DataFrame(
        {
            "unique_id": ["A", "A", "B", "C"],
            "ds": pd.to_datetime(["2011-01-01", "2011-01-04", "2011-01-02", "2011-01-05"]),
            "y": [3.0, 1.0, 2.0, 9.0],
            "price": [1.0, 1.5, 2.0, 1.0],
        }
    )
    cfg = CFG.features.model_copy(update={"min_selling_days": 2})
    panel = build_panel(daily, cfg)
    assert panel["unique_id"].unique().tolist() == ["A"]  # B and C sold on one day only
    assert panel["y"].tolist() == [3.0, 0.0, 0.0, 1.0, 0.0]  # through the data's last day, 2011-01-05
    assert panel["price"].tolist() == [1.0, 1.0, 1.0, 1.5, 1.5]  # last price carried forward
    assert panel["promo"].tolist() == [0.0] * 5 and panel["event"].tolist() == [0.0] * 5


def test_max_series_keeps_the_largest_by_volume():
    daily = pd.DataFrame(
        {
            "unique_id": ["A", "A", "B", "B", "C", "C"],
            "ds": pd.to_datetime(["2011-01-01", "2011-01-02"] * 3),
            "y": [1.0, 1.0, 5.0, 5.0, 3.0, 0.0],
        }
    )
    cfg = CFG.features.model_copy(update={"min_selling_days": 2, "max_series": 1})
    assert build_panel(daily, cfg)["unique_id"].unique().tolist() == ["B"]  # C sold on one day only


def test_no_series_left_is_a_clear_error():
    daily = pd.DataFrame({"unique_id": ["A"], "ds": pd.to_datetime(["2011-01-01"]), "y": [1.0], "price": [1.0]})
    with pytest.raises(ValueError, match="min_selling_days"):
        build_panel(daily, CFG.features)


def test_split_holds_out_three_origins_of_28_days_and_28_before_them():
    panel = pd.DataFrame({"unique_id": "A", "ds": pd.date_range("2011-01-01", periods=150), "y": 1.0})
    split = Split.from_panel(panel, CFG.features)
    # 150 days: the last 3 x 28 = 84 are held out, the 28 before them validate, 38 train.
    assert len(split.test(panel)) == 84 and len(split.fit(panel)) == 66 and len(split.train(panel)) == 38
    assert split.test_start == pd.Timestamp("2011-03-08")  # 2011-01-01 + 66 days
    assert split.origins() == [pd.Timestamp("2011-03-08"), pd.Timestamp("2011-04-05"), pd.Timestamp("2011-05-03")]
    one = Split.from_panel(panel, CFG.features.model_copy(update={"test_origins": 1}))
    assert len(one.test(panel)) == 28 and one.origins() == [pd.Timestamp("2011-05-03")]


def test_calendar_features_are_on_the_unit_circle():
    f = calendar_features(pd.date_range("2011-01-03", periods=7))  # a Monday
    assert f.shape == (7, 4)
    np.testing.assert_allclose(f[0, :2], [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(f[:, 0] ** 2 + f[:, 1] ** 2, 1.0, atol=1e-6)
