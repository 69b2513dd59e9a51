"""Any shop's data either runs the forecasting path or stops at validation with a DataError (hypothesis).

Small generated order lines or panels of 30 to 1,000 days and 1 to 50 series, with series that start
late or stop early, gaps, 90% zero days, constant series, one huge order, a single customer and
missing columns. The path is the pipeline's: read, gate (GX), featurize, fit the horizon and origins
to the history (`features.plan`), select on validation origins, forecast, order-up-to levels. Whether
an example must stop is worked out from the generated data alone: a required column missing, no
series with enough selling days, or fewer days than the smallest plan needs (3 held-out origins of
L + R = 10 days, two validation origins a week apart, 10 days to fit: 30 + 17 + 10 = 57).
"""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supplyml import simulation as sim
from supplyml.config import load_config
from supplyml.data import DataError
from supplyml.features import Split, history_days, plan
from supplyml.forecasting.selection import select
from supplyml.validation import load_panel

pytestmark = pytest.mark.slow

MIN_SELLING_DAYS = 20
LEAST_DAYS = 57  # by hand, as above
# Light models: the property is about shapes, not accuracy. AutoETS sits out (as above 50 series).
LIGHT = [
    "model.max_epochs=1",
    "model.hidden_size=8",
    "model.num_samples=20",
    "model.windows_per_series=2",
    "selection.max_series.auto_ets=0",
    "evaluation.n_jobs=1",  # as conftest.SMALL: one LightGBM thread per test worker
    "selection.path_correlations=[0.0,0.5]",
    "inventory.num_sample_paths=50",
    f"features.min_selling_days={MIN_SELLING_DAYS}",
]
ORDER_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
OPTIONAL = {"InvoiceNo": "invoice", "Description": "description", "CustomerID": "customer", "Country": "country"}


@st.composite
def shops(draw):
    """(frame, format, overrides, shape) of a generated shop; `shape` is what the expected outcome reads."""
    days = draw(st.integers(30, 1000))
    n = draw(st.integers(1, 50))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2022-01-01", periods=days)
    rate = rng.uniform(0.5, 8.0, n)
    if draw(st.booleans()):  # 90% zero days
        rate = np.full(n, 0.1)
    y = rng.poisson(rate[:, None], (n, days)).astype(float)
    if draw(st.booleans()):  # a constant series
        y[0] = 3.0
    start = np.zeros(n, dtype=int)
    stop = np.full(n, days)
    if draw(st.booleans()):  # series that start late or stop early
        start = rng.integers(0, days // 2 + 1, n)
        stop = np.where(rng.uniform(size=n) < 0.3, rng.integers(days // 2, days + 1, n), days)
    t = np.arange(days)[None, :]
    y[(t < start[:, None]) | (t >= stop[:, None])] = 0.0
    if draw(st.booleans()):  # a gap of 10-30 days in every series
        at = draw(st.integers(0, max(0, days - 30)))
        y[:, at : at + draw(st.integers(10, 30))] = 0.0
    if draw(st.booleans()):  # one huge order
        y[rng.integers(n), rng.integers(days)] = 100_000.0
    sku = np.repeat([f"SKU{i:02d}" for i in range(n)], days)
    day = np.tile(ds, n)
    qty = y.ravel()
    sold = qty > 0
    # What the data says before any code reads it: selling days per series, and the panel's span
    # (from the first sale of a series with enough selling days to the data's last day).
    selling = (y > 0).sum(axis=1)
    kept = selling >= MIN_SELLING_DAYS
    end = day[sold].max() if sold.any() else None
    first = min((ds[np.argmax(y[i] > 0)] for i in np.flatnonzero(kept)), default=None)
    shape = {"enough_sellers": bool(kept.any()), "days": (end - first).days + 1 if first is not None else 0}
    if draw(st.booleans()):
        frame = pd.DataFrame({"unique_id": sku[sold], "ds": day[sold], "y": qty[sold], "price": 2.5})
        missing = draw(st.sampled_from([None, "y", "price"]))
        shape["required_missing"] = missing == "y"
        return (frame.drop(columns=[missing]) if missing else frame), "panel", [], shape
    customers = 1 if draw(st.booleans()) else 30
    m = int(sold.sum())
    frame = pd.DataFrame(
        {
            "InvoiceNo": [f"{536000 + i}" for i in range(m)],
            "StockCode": sku[sold],
            "Description": "ITEM",
            "Quantity": qty[sold].astype(int),
            "InvoiceDate": pd.DatetimeIndex(day[sold]).strftime("%Y-%m-%d 10:00"),
            "UnitPrice": 2.5,
            "CustomerID": rng.integers(0, customers, m).astype(float) + 12000,
            "Country": "United Kingdom",
        }
    )
    missing = draw(st.sampled_from([None, *OPTIONAL, "Quantity"]))
    overrides = [f"data.columns.{OPTIONAL[missing]}=null"] if missing in OPTIONAL else []
    shape["required_missing"] = missing == "Quantity"
    return (frame.drop(columns=[missing]) if missing else frame), "transactions", overrides, shape


def forecasting_path(cfg):
    """The pipeline's forecasting path in one process: the order-up-to levels of every series."""
    panel = load_panel(cfg)
    cfg = plan(cfg, history_days(panel["ds"]))
    fit = Split.from_panel(panel, cfg.features).fit(panel)
    model, _ = select(fit, cfg, cfg.model)
    model = model.with_history(panel)
    forecast = model.predict(model.skus, cfg.features.horizon, [0.05, 0.5, 0.95])
    inv = cfg.inventory
    paths = model.sample(model.skus, inv.lead_time + inv.review_period, inv.num_sample_paths, seed=0)
    return forecast, sim.sample_path_levels(paths, model.order_level(inv.service_level))


# 12 derandomized examples (the same in every run; ~50 s on 2 cores): short and long histories, both endings.
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(shops())
def test_any_shop_runs_the_forecasting_path_or_stops_at_validation(shop):
    frame, fmt, overrides, shape = shop
    must_stop = shape["required_missing"] or not shape["enough_sellers"] or shape["days"] < LEAST_DAYS
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shop.csv"
        frame.to_csv(path, index=False)
        cfg = load_config(overrides=[f"data.path={path}", f"data.format={fmt}", *LIGHT, *overrides])
        try:
            forecast, levels = forecasting_path(cfg)
        except DataError as e:
            assert must_stop, f"stopped although the data is usable: {e}"
            assert str(e)
            return
    assert not must_stop, f"ran although the data should stop: {shape}"
    numbers = forecast.drop(columns=["unique_id", "ds"]).to_numpy(dtype=float)
    assert np.isfinite(numbers).all() and (numbers >= 0).all()
    assert np.isfinite(levels).all() and (levels >= 0).all() and len(levels) == forecast["unique_id"].nunique()
