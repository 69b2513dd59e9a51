"""`supplyml monitor`: a small real champion registered in a tmp MLflow store, new actuals after its
history, and the verdict, figures and files the monitor gives for them."""

import json
import math
import subprocess

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import stores, supplyml, weekly_panel
from mlflow import MlflowClient
from test_validation import real_file

from cli import main as cli
from supplyml.config import load_config
from supplyml.data import read_table
from supplyml.features import build_panel, to_daily
from supplyml.forecasting import monitor
from supplyml.forecasting.metrics import evaluate_forecasts
from supplyml.forecasting.statistical import Statistical
from supplyml.registry import CHAMPION, register
from supplyml.tracking import log_forecaster, setup_tracking

HORIZON = 28
N_SERIES = 8
WEEKLY = np.array([1.0, 1.2, 1.4, 1.2, 1.0, 0.3, 0.6])  # weekly_panel's profile, Monday first
DOUBLED = [f"S{i}" for i in range(0, N_SERIES, 2)]  # half the series, the smallest (level 3) among them


def register_champion(cfg, panel: pd.DataFrame, end: pd.Timestamp) -> dict:
    """What the pipeline registers, in small: window_average fitted up to a held-out horizon before
    `end`, tagged with its metrics there, serving from `end` (its history); made `champion`."""
    quantiles = cfg.evaluation.quantiles
    cut = end - pd.Timedelta(days=HORIZON)
    fit, test = panel[panel["ds"] <= cut], panel[(panel["ds"] > cut) & (panel["ds"] <= end)]
    model = Statistical.fit(fit, "window_average", HORIZON)
    metrics = evaluate_forecasts(fit, test, model.predict(None, HORIZON, quantiles), quantiles)
    model = model.with_history(panel[panel["ds"] <= end])
    setup_tracking(cfg)
    with mlflow.start_run():
        uri = log_forecaster(model, cfg)
    version = register(uri, cfg.registry.model_name, {"metrics": json.dumps(metrics)})
    MlflowClient().set_registered_model_alias(cfg.registry.model_name, CHAMPION, version.version)
    mlflow.set_tracking_uri(None)  # each test's monitor.run points MLflow at its own store again
    return metrics


def expected_wrmsse(days: int) -> float:
    """WRMSSE of a 4-week window average on weekly_panel's Poisson series: per series, E[squared error]
    (Poisson variance, the weekly profile around its mean, the mean's own variance) over the naive
    scale E[(y_t - y_{t-1})^2]; weights in proportion to the level, as units sold are."""
    levels = 3.0 * np.arange(1, N_SERIES + 1)
    rate = levels[:, None] * WEEKLY  # (series, weekday)
    mean = rate.mean(axis=1, keepdims=True)
    error = rate.mean(axis=1) + ((rate - mean) ** 2).mean(axis=1) + mean[:, 0] / 28
    previous = np.roll(rate, 1, axis=1)
    scale = (rate + previous + (rate - previous) ** 2).mean(axis=1)
    return float(np.sum(levels * np.sqrt(error / scale)) / levels.sum())


@pytest.fixture(scope="module")
def weekly(tmp_path_factory):
    """A champion on 20 weeks of 8 stationary weekly Poisson series (store under tmp), and the 4 weeks
    after them from the same process, kept aside as new actuals."""
    tmp = tmp_path_factory.mktemp("monitor")
    panel = weekly_panel(days=20 * 7 + HORIZON, n=N_SERIES, seed=3)
    end = panel["ds"].min() + pd.Timedelta(days=20 * 7 - 1)
    metrics = register_champion(load_config(overrides=stores(tmp)), panel, end)
    return tmp, panel, end, metrics


def panel_cfg(tmp, frame: pd.DataFrame, name: str):
    """Config for monitoring `frame`, written as a panel file, against the store under `tmp`."""
    path = tmp / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    return load_config(overrides=[*stores(tmp), f"data.path={path}", "data.format=panel"])


def run_cli(tmp, data, out, *extra) -> subprocess.CompletedProcess:
    """`supplyml monitor` as a user runs it; MLflow's URI comes from --set only."""
    return supplyml("monitor", "--data", str(data), "--out", str(out), *(a for o in stores(tmp) for a in ("--set", o)), *extra)


def client(tmp) -> MlflowClient:
    """The store under `tmp`, whatever the process's current tracking URI."""
    return MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")


def test_new_weeks_from_the_same_process_are_healthy(weekly):
    tmp, panel, end, metrics = weekly
    # A shop's export of the new days only, without its days of no sales: the monitor fills them back.
    new = panel[(panel["ds"] > end) & (panel["y"] > 0)]
    result = monitor.run(panel_cfg(tmp, new, "stationary"), tmp / "ok")
    assert result["window"] == {
        "start": str((end + pd.Timedelta(days=1)).date()),
        "end": str(panel["ds"].max().date()),
        "days": HORIZON,
    }
    assert result["series"] == result["champion_series"] == N_SERIES
    assert result["realised"]["wrmsse"] == pytest.approx(expected_wrmsse(HORIZON), rel=0.1)
    assert result["realised"]["wrmsse"] == pytest.approx(metrics["wrmsse"], rel=0.15)
    assert result["backtest"] == {k: pytest.approx(metrics[k]) for k in monitor.HEADLINE}
    assert 0.85 <= result["realised"]["coverage_95"] <= 1 and 0.3 <= result["realised"]["coverage_50"] <= 0.7
    assert not result["retrain"] and result["reasons"] == []
    drift = result["drift"]
    assert drift["series"]["moved"] == [] and drift["series"]["tested"] == N_SERIES
    assert drift["features"]["moved"] == [] and drift["features"]["tested"] == 1  # y: price, promo, event are constant
    assert json.loads((tmp / "ok" / "monitor.json").read_text()) == result
    assert "OK" in (tmp / "ok" / "report.html").read_text() and (tmp / "ok" / "drift_series.html").exists()
    run = client(tmp).get_run(result["mlflow_run_id"])
    assert run.info.run_name == "monitor" and run.data.tags["champion_version"] == "1"
    assert run.data.metrics["realised_wrmsse"] == pytest.approx(result["realised"]["wrmsse"])
    assert run.data.metrics["retrain"] == 0
    artifacts = {a.path for a in client(tmp).list_artifacts(run.info.run_id, "monitor")}
    assert {"monitor/report.html", "monitor/monitor.json"} <= artifacts


@pytest.mark.slow
def test_doubled_demand_says_retrain_and_names_the_series_through_the_cli(weekly):
    tmp, panel, end, metrics = weekly
    shifted = panel.copy()
    shifted.loc[(shifted["ds"] > end) & shifted["unique_id"].isin(DOUBLED), "y"] *= 2
    path = tmp / "shifted.csv"
    shifted.assign(ds=shifted["ds"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    proc = run_cli(tmp, path, tmp / "shifted", "--format", "panel")
    assert proc.returncode == 3, proc.stdout + proc.stderr[-3000:]
    result = json.loads((tmp / "shifted" / "monitor.json").read_text())
    assert sorted(m["name"] for m in result["drift"]["series"]["moved"]) == DOUBLED
    assert result["drift"]["features"]["moved"][0]["name"] == "y"
    assert result["realised"]["wrmsse"] > 1.3 * metrics["wrmsse"]
    assert result["retrain"] and len(result["reasons"]) == 3
    retrain = [line for line in proc.stdout.splitlines() if line.startswith("RETRAIN:")]
    assert len(retrain) == 1 and "demand drifted in 4 of 8 series (50% > monitor.max_drifted_share 20%)" in retrain[0]
    assert "Drifted series (ks p <= 0.01): 4 of 8 (50%): " in proc.stdout
    assert client(tmp).get_run(result["mlflow_run_id"]).data.metrics["drifted_series"] == 4
    assert "S0" in (tmp / "shifted" / "report.html").read_text()


def test_data_that_ends_before_the_champion_history_is_rejected_with_both_dates(weekly, tmp_path, monkeypatch, caplog):
    tmp, panel, end, _ = weekly
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))  # the CLI exports it; restored after the test
    old = panel[panel["ds"] <= end - pd.Timedelta(days=7)]
    path = tmp_path / "old.parquet"
    old.to_parquet(path, index=False)
    args = [a for o in stores(tmp) for a in ("--set", o)]
    assert cli.main(["monitor", "--data", str(path), "--format", "panel", "--out", str(tmp_path / "out"), *args]) == 1
    message = next(r.getMessage() for r in caplog.records if "history end" in r.getMessage())
    assert f"ends {(end - pd.Timedelta(days=7)).date()}" in message and f"history end {end.date()}" in message
    assert f"pass actuals from {(end + pd.Timedelta(days=1)).date()} on" in message


def test_without_a_champion_it_says_to_run_the_pipeline(weekly, tmp_path, monkeypatch, caplog):
    _, panel, _, _ = weekly
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    path = tmp_path / "panel.parquet"
    panel.to_parquet(path, index=False)
    args = [a for o in stores(tmp_path) for a in ("--set", o)]
    assert cli.main(["monitor", "--data", str(path), "--format", "panel", "--out", str(tmp_path / "out"), *args]) == 2
    assert any("run `supplyml pipeline run` first" in r.getMessage() for r in caplog.records)


def test_a_file_the_gate_rejects_exits_1_naming_the_column(weekly, tmp_path, monkeypatch, caplog):
    tmp, panel, end, _ = weekly
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    bad = panel.assign(y=panel["y"].where(panel["ds"] != end + pd.Timedelta(days=3), -1.0))
    path = tmp_path / "negative.parquet"
    bad.to_parquet(path, index=False)
    args = [a for o in stores(tmp) for a in ("--set", o)]
    assert cli.main(["monitor", "--data", str(path), "--format", "panel", "--out", str(tmp_path / "out"), *args]) == 1
    assert any("y (demand) is not negative" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_online_retail_held_back_weeks_get_realised_accuracy(tmp_path):
    """A champion on 30 SKUs of the real file up to 2011-11-11; the file itself, through 2011-12-09,
    is the new data."""
    end = pd.Timestamp("2011-11-11")
    cfg = load_config(overrides=[*stores(tmp_path), f"data.path={real_file()}", "features.max_series=30"])
    raw = read_table(real_file(), cfg.data)
    history = raw[pd.to_datetime(raw["InvoiceDate"]) < end + pd.Timedelta(days=1)]
    metrics = register_champion(cfg, build_panel(to_daily(history, cfg.data), cfg.features), end)

    result = monitor.run(cfg, tmp_path / "out")
    assert result["window"] == {"start": "2011-11-12", "end": "2011-12-09", "days": 28}
    assert result["series"] == result["champion_series"] == 30
    realised = result["realised"]
    assert all(math.isfinite(realised[k]) for k in monitor.HEADLINE)
    assert 0.3 < realised["wrmsse"] < 3 and 0 < realised["wspl"] < 3
    assert 0.5 < realised["coverage_95"] <= 1 and 0.1 < realised["coverage_50"] < 0.9
    assert result["backtest"]["wrmsse"] == pytest.approx(metrics["wrmsse"])
    assert result["wrmsse_ratio"] == pytest.approx(realised["wrmsse"] / metrics["wrmsse"])
    assert result["drift"]["series"]["tested"] == 30 and result["drift"]["features"]["tested"] == 2  # y, price
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "monitor.json").exists()
    logged = client(tmp_path).get_run(result["mlflow_run_id"]).data.metrics
    assert logged["realised_wrmsse"] == pytest.approx(realised["wrmsse"])
    assert logged["backtest_wrmsse"] == pytest.approx(metrics["wrmsse"])
    assert logged["retrain"] == float(result["retrain"])
    # Accuracy held and demand did not move: no rule fires (price shifts, if any, are only reported).
    assert result["reasons"] == [] and logged["retrain"] == 0.0
    assert {m["name"] for m in result["drift"]["features"]["moved"]} <= {"price"}
