"""K-means segments on hand-made customers and series whose groups and features are known."""

import numpy as np
import pandas as pd
import pytest

from supplyml.config import load_config
from supplyml.segments import customer_segments, demand_shape, product_segments, rfm

CFG = load_config()
AS_OF = pd.Timestamp("2011-12-10")
COLS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]

# Three obvious RFM groups, 10 customers each: (recency days, invoices, quantity and price of each invoice's line).
GROUPS = {
    "best": dict(recency=[1, 1, 2, 2, 3, 3, 1, 2, 3, 2], invoices=[10, 11, 12, 13, 14, 10, 11, 12, 13, 14], qty=10, price=10.0),
    "middle": dict(recency=[30, 35, 40, 45, 50, 30, 35, 40, 45, 50], invoices=[3, 4, 5, 3, 4, 5, 3, 4, 5, 4], qty=5, price=6.0),
    "lapsed": dict(recency=[200, 220, 240, 260, 280, 200, 220, 240, 260, 280], invoices=[1] * 10, qty=2, price=5.0),
}
# Hand-computed group means: recency, invoices, and invoices x qty x price.
EXPECTED = {"best": (2.0, 12.0, 1200.0), "middle": (40.0, 4.0, 120.0), "lapsed": (240.0, 1.0, 10.0)}


def customers() -> tuple[pd.DataFrame, dict[float, str]]:
    rows, group_of, invoice = [], {}, 100000
    for g, (name, spec) in enumerate(GROUPS.items()):
        for i, (recency, n) in enumerate(zip(spec["recency"], spec["invoices"])):
            cust = float(10000 + 100 * g + i)
            group_of[cust] = name
            for j in range(n):  # one invoice a week back from the last purchase
                day = AS_OF - pd.Timedelta(days=recency + 7 * j)
                rows.append((str(invoice), "85123A", "", spec["qty"], f"{day.date()} 10:00:00", spec["price"], cust, "UK"))
                invoice += 1
    return pd.DataFrame(rows, columns=COLS), group_of


def test_three_rfm_groups_found_and_profiled():
    raw, group_of = customers()
    seg = customer_segments(raw, CFG)  # as_of: the day after the last line, 2011-12-10
    assert seg.k == 3
    assert max(seg.silhouette, key=seg.silhouette.get) == 3 and sorted(seg.silhouette) == list(range(2, 9))
    groups = pd.Series(group_of).reindex(seg.labels.index)
    assert (pd.crosstab(seg.labels, groups) > 0).sum().tolist() == [1, 1, 1]  # each group is one segment ...
    assert seg.labels.nunique() == 3  # ... and each segment one group
    for name, (recency, frequency, monetary) in EXPECTED.items():
        row = seg.profile.loc[seg.labels[groups == name].iloc[0]]
        assert row["count"] == 10
        assert row[["recency", "frequency", "monetary"]].tolist() == pytest.approx([recency, frequency, monetary])
    # Segment ids follow recency; names follow the centroid ranks.
    assert seg.names == {0: "recent, frequent, high value", 1: "lapsing, occasional, mid value", 2: "lapsed, rare, low value"}
    assert seg.profile["name"].tolist() == list(seg.names.values())


def test_as_of_uses_only_lines_before_it():
    raw, _ = customers()
    cut = AS_OF - pd.Timedelta(days=10)
    before = rfm(raw, CFG.data, cut)
    later = pd.DataFrame(
        [
            ("900001", "85123A", "", 50, f"{cut.date()} 00:00:00", 10.0, 10200.0, "UK"),  # on as_of
            ("900002", "85123A", "", 50, "2011-12-09 09:00:00", 10.0, 10100.0, "UK"),
            ("900003", "85123A", "", 50, "2011-12-09 09:00:00", 10.0, 99999.0, "UK"),
        ],
        columns=COLS,
    )
    after = rfm(pd.concat([raw, later], ignore_index=True), CFG.data, cut)
    pd.testing.assert_frame_equal(before, after)
    until = CFG.data.model_copy(update={"until": (cut - pd.Timedelta(days=1)).date()})  # demand up to 11-29
    pd.testing.assert_frame_equal(rfm(raw, until), before)  # as_of defaults to the day after it
    assert 99999.0 not in after.index
    # Customer 10000 bought 10 x 10.0 on 2011-12-09, 12-02, 11-25, ... (10 invoices): as of 11-30, 8 of them.
    best = after.loc[10000.0]
    assert (best["recency"], best["frequency"], best["monetary"]) == (5.0, 8.0, 800.0)
    seg = customer_segments(pd.concat([raw, later], ignore_index=True), CFG, cut)
    pd.testing.assert_series_equal(seg.labels, customer_segments(raw, CFG, cut).labels)


def test_cancellations_and_non_products_are_not_value_or_visits():
    raw, _ = customers()
    base = rfm(raw, CFG.data).loc[10000.0]  # 10 invoices of 10 x 10.0, the last on 2011-12-09
    extra = pd.DataFrame(
        [
            ("500001", "22423", "", 4, "2011-11-01 10:00:00", 12.5, 10000.0, "UK"),  # bought 4 x 12.5 ...
            ("C500002", "22423", "", -3, "2011-11-01 15:00:00", 12.5, 10000.0, "UK"),  # ... 3 cancelled same day
            ("500003", "22424", "", 2, "2011-11-02 10:00:00", 5.0, 10000.0, "UK"),  # bought and wholly cancelled:
            ("C500004", "22424", "", -2, "2011-11-02 11:00:00", 5.0, 10000.0, "UK"),  # no value, no visit
            ("C500005", "85123A", "", -10, "2011-12-09 12:00:00", 10.0, 10000.0, "UK"),  # cancels the last order
            ("C500006", "85123A", "", -5, "2011-10-10 12:00:00", 10.0, 10000.0, "UK"),  # a return on its own: nothing
            ("500007", "POST", "", 1, "2011-11-20 10:00:00", 18.0, 10000.0, "UK"),  # postage is not a product
            ("500008", "85123A", "", 3, "2011-11-21 10:00:00", 0.0, 10000.0, "UK"),  # price 0: an adjustment
        ],
        columns=COLS,
    )
    got = rfm(pd.concat([raw, extra], ignore_index=True), CFG.data).loc[10000.0]
    # The 2011-12-09 order is cancelled: the last purchase is a week earlier; one invoice gone, one (500001) added.
    assert got["recency"] == base["recency"] + 7 == 8.0
    assert got["frequency"] == base["frequency"] - 1 + 1 == 10.0
    assert got["monetary"] == base["monetary"] - 100.0 + 1 * 12.5 == 912.5


def panel(series: dict[str, np.ndarray]) -> pd.DataFrame:
    days = pd.date_range("2011-01-03", periods=105)  # 15 weeks, a Monday first: every period below divides it
    return pd.DataFrame(
        {
            "unique_id": np.repeat(list(series), len(days)),
            "ds": np.tile(days, len(series)),
            "y": np.concatenate(list(series.values())).astype(float),
        }
    )


def test_product_segments_separate_smooth_from_intermittent():
    t = np.arange(105)
    week = np.array([10, 12, 12, 12, 14, 0, 5])[t % 7]  # Monday first, no Saturday sales: all variance is weekday
    smooth = {f"S{i}": (1 + i / 5) * week for i in range(6)}
    # A sale every 5th day (21 of 105; 5 and 7 coprime, so each weekday gets 3): no weekly profile.
    sparse = {f"I{i}": np.where((t + i) % 5 == 0, 2 + i, 0) for i in range(6)}
    shape = demand_shape(panel({**smooth, **sparse}))
    assert shape.loc["I3", "zero_share"] == 84 / 105 and shape.loc["S0", "zero_share"] == 1 / 7  # Saturdays: 0
    assert shape.loc["I3", "weekly_strength"] == pytest.approx(0.0, abs=1e-12)
    assert shape.loc["S0", "weekly_strength"] == pytest.approx(1.0)
    assert shape.loc["I3", "mean_demand"] == pytest.approx(5 * 21 / 105)
    assert shape.loc["S0", "mean_demand"] == pytest.approx(65 / 7)

    seg = product_segments(panel({**smooth, **sparse}), CFG)
    assert seg.k == 2
    assert seg.labels[list(sparse)].eq(0).all() and seg.labels[list(smooth)].eq(1).all()  # 0: the lower volume
    assert seg.profile.loc[0, "zero_share"] == pytest.approx(0.8)
    assert seg.profile.loc[1, "zero_share"] == pytest.approx(1 / 7)
    assert seg.profile.loc[1, "mean_demand"] == pytest.approx(1.5 * 65 / 7)  # mean of (1 + i/5) is 1.5
    assert seg.names == {0: "low volume, highly intermittent, flat week", 1: "high volume, steady, strong weekly cycle"}


def test_too_few_customers_is_an_error_that_says_so():
    raw, _ = customers()
    with pytest.raises(ValueError, match="cannot be split"):
        customer_segments(raw[raw["CustomerID"] == 10000.0], CFG)
