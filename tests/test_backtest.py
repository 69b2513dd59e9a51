"""Rolling-origin backtest and `supplyml bench`: origins, pooled tables, policies, and the real CLI end to end."""

import json
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, stores, supplyml, weekly_panel

from supplyml.config import Config, ModelConfig
from supplyml.forecasting import backtest
from supplyml.forecasting.networks import NetworkForecaster


def test_origins_are_one_horizon_apart_and_end_with_the_data():
    panel = weekly_panel(days=120)  # 2022-01-01 .. 2022-04-30
    starts = backtest.origins(panel, horizon=14, n=3)
    assert starts == [pd.Timestamp("2022-03-20"), pd.Timestamp("2022-04-03"), pd.Timestamp("2022-04-17")]


def test_too_few_days_for_the_origins_is_a_clear_error():
    with pytest.raises(ValueError, match="3 origins of 28 days need more than 112 days"):
        backtest.origins(weekly_panel(days=100), horizon=28, n=3)


@pytest.fixture(scope="module")
def result():
    panel = weekly_panel()
    cfg = Config.model_validate(
        {
            "features": {"horizon": 14, "val_days": 14},
            "evaluation": {"origins": 2, "season_length": 7},
            "inventory": {"num_sample_paths": 100, "lead_time": 2, "review_period": 7},
        }
    )
    params = ModelConfig(
        hidden_size=16, num_layers=1, context_length=28, max_epochs=3, batch_size=64, windows_per_series=16, learning_rate=0.01
    )
    fitted = []

    def fit(frame):
        fitted.append(frame["ds"].max())
        return NetworkForecaster.fit(frame, params, 14, seed=0)[0]

    return backtest.run(panel, cfg, fit, ["seasonal_naive", "window_average"]), fitted, panel


def test_the_champion_is_refitted_on_the_days_before_each_origin(result):
    bt, fitted, _ = result
    assert fitted == [pd.Timestamp("2022-04-02"), pd.Timestamp("2022-04-16")]
    spans = bt.forecasts["supplyml"].groupby("origin")["ds"].agg(["min", "max"])
    assert spans.to_dict("list") == {
        "min": [pd.Timestamp("2022-04-03"), pd.Timestamp("2022-04-17")],
        "max": [pd.Timestamp("2022-04-16"), pd.Timestamp("2022-04-30")],
    }


def test_the_table_averages_origins_and_sums_seconds(result):
    bt = result[0]
    assert len(bt.per_origin) == 2 * 3 and list(bt.table().index) == ["supplyml", "seasonal_naive", "window_average"]
    rows = bt.per_origin[bt.per_origin["model"] == "window_average"]
    assert bt.table().loc["window_average", "wrmsse"] == pytest.approx(rows["wrmsse"].mean())
    assert bt.table().loc["window_average", "seconds"] == pytest.approx(rows["seconds"].sum())


def test_perfect_foresight_never_loses_a_sale_and_the_timeline_covers_both_origins(result):
    bt, _, panel = result
    perfect = bt.inventory.loc["perfect foresight"]
    assert perfect["cycle_service_level"] == 1.0 and perfect["fill_rate"] == 1.0 and perfect["lost_sales_cost"] == 0.0
    inv = bt.inventory
    assert np.allclose(inv["total_cost"], inv["holding_cost"] + inv["lost_sales_cost"])
    assert list(bt.on_hand.index) == list(pd.date_range("2022-04-03", "2022-04-30"))
    # Holding cost is price (2.0) x 0.001 x unit-days on hand; unit-days = mean on hand x series x days.
    assert perfect["holding_cost"] == pytest.approx(2.0 * 0.001 * perfect["avg_on_hand"] * 6 * 28)


def test_lead_time_plus_review_totals_are_the_actual_sums_over_each_window_the_data_covers(result):
    bt, _, panel = result
    t = bt.totals  # L=2, R=7: windows of 9 days from reviews on days 0 and 7 of each 14-day horizon
    # The last origin's day-7 window would end after the data: left out. 6 series x 3 windows.
    assert len(t) == 18 and sorted(t.groupby(["origin", "review"]).size().items()) == [
        ((pd.Timestamp("2022-04-03"), 0), 6),
        ((pd.Timestamp("2022-04-03"), 7), 6),
        ((pd.Timestamp("2022-04-17"), 0), 6),
    ]
    row = t[(t["origin"] == "2022-04-03") & (t["review"] == 7) & (t["unique_id"] == "S2")].iloc[0]
    days = panel[(panel["unique_id"] == "S2") & panel["ds"].between("2022-04-10", "2022-04-18")]
    assert len(days) == 9 and row["actual"] == days["y"].sum()
    assert (t["q0.025"] <= t["q0.25"]).all() and (t["q0.75"] <= t["q0.975"]).all()
    cal = bt.calibration(0.95)
    assert cal["total_within_S"] == pytest.approx((t["actual"] <= t["S"]).mean())
    assert cal["cycle_service_level"] == bt.inventory.loc["forecast base stock", "cycle_service_level"]
    assert cal["target_service_level"] == 0.95


def test_the_report_has_every_section(result):
    bt, _, panel = result
    html = bt.report(panel, Config(), "bench", {"git_commit": "abc"})
    for heading in ("seasonal_naive", "perfect foresight", "intermittent", "abc", "total_coverage_95"):
        assert heading in html
    assert html.count("<img") == 3


@pytest.mark.slow
def test_bench_cli_on_a_foreign_panel_writes_results_forecasts_report_and_mlflow(tmp_path):
    data = tmp_path / "shop.parquet"
    subprocess.run(
        [
            sys.executable,
            "benchmarks/make_multistore.py",
            "--out",
            str(data),
            "--stores",
            "2",
            "--items",
            "4",
            "--start",
            "2022-01-01",
            "--end",
            "2022-12-31",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    mapping = {
        "unique_id": "item",
        "ds": "date",
        "y": "units",
        "price": "unit_price",
        "promo": "on_promo",
        "event": "holiday",
        "location": "store",
    }
    sets = [
        *stores(tmp_path),
        "tune.n_trials=2",
        "tune.max_epochs=1",
        "model.max_epochs=2",
        "inventory.num_sample_paths=100",
        "evaluation.n_jobs=1",  # as conftest.SMALL: one LightGBM thread per test worker
        "evaluation.origins=2",  # the bench's rolling origins (3 by default)
        "selection.origins=2",  # validation origins before each of them (5 by default)
        "gate.resamples=1999",
        "evaluation.peer_max_series.arima=7",  # 8 series: AutoARIMA sits out of the peers (test_peers checks it)
        *[f"data.panel_columns.{k}={v}" for k, v in mapping.items()],
    ]
    out = tmp_path / "out"
    proc = supplyml(
        "bench", "--data", str(data), "--format", "panel", "--out", str(out), *(a for s in sets for a in ("--set", s))
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for row in (
        "supplyml",
        "seasonal_naive",
        "auto_ets",
        "croston",
        "adida",
        "window_average",
        "lightgbm",
        "linear",
        "forecast base stock",
        "28-day MA + normal safety stock",
        "perfect foresight",
    ):
        assert row in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert len(results["origins"]) == 2 and results["series"] == 8
    peers = {"seasonal_naive", "auto_ets", "croston", "adida", "window_average", "lightgbm", "linear"}
    assert set(results["average"]) == {"supplyml", *peers}
    assert "arima" not in proc.stdout
    fc = pd.read_parquet(out / "forecasts.parquet")
    assert list(fc.columns[:4]) == ["unique_id", "ds", "origin", "mean"] and "q0.995" in fc
    assert len(fc) == 8 * 28 * 2 and fc["unique_id"].str.contains("@").all()
    assert "<img" in (out / "report.html").read_text()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    run = mlflow.get_run(results["mlflow_run_id"])
    assert run.data.metrics["supplyml.wrmsse"] == pytest.approx(results["average"]["supplyml"]["wrmsse"])


def test_bench_rejects_bad_data_before_training(tmp_path):
    data = tmp_path / "bad.csv"
    pd.DataFrame({"unique_id": ["A", "A"], "ds": ["2022-01-01", "2022-01-01"], "y": [1, -2]}).to_csv(data, index=False)
    proc = supplyml(
        "bench",
        "--data",
        str(data),
        "--format",
        "panel",
        "--out",
        str(tmp_path / "out"),
        *(a for s in stores(tmp_path) for a in ("--set", s)),
    )
    assert proc.returncode == 1
    assert "one row per series and day" in proc.stderr and "y (demand) is not negative" in proc.stderr
    assert "rejected before anything trained" in proc.stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_a_misspelt_peer_cap_stops_the_bench_with_its_name(tmp_path):
    proc = supplyml("bench", *(a for s in [*stores(tmp_path), "evaluation.peer_max_series.arimaa=5"] for a in ("--set", s)))
    assert proc.returncode == 2 and "evaluation.peer_max_series has unknown names ['arimaa']; choose from" in proc.stderr
    assert not (tmp_path / "bench").exists()  # nothing written
