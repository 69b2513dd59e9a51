"""Peers on the real Online Retail panel: one origin, the last `horizon` days held out.

Prints WRMSSE, WSPL, coverage, bias and wall time per peer and writes them as JSON.

    .venv/bin/python benchmarks/peers.py [--out benchmarks/results/peers.json] [--n-jobs 2]
                                         [--compare-lightgbm-intervals]

The lightgbm peer needs the bench extra: pip install -e ".[bench]". --compare-lightgbm-intervals
adds the measurement behind the LightGBM peer's choice (supplyml.forecasting.peers) of intervals: its pooled split-conformal
band against mlforecast's own PredictionIntervals(n_windows=2, h=horizon), both methods, on the
series long enough for mlforecast's (it refuses a panel with any series under 2 x horizon + 1 days).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from supplyml.config import load_config
from supplyml.features import Split
from supplyml.forecasting.base import BACKTESTS
from supplyml.forecasting.metrics import evaluate_forecasts
from supplyml.forecasting.peers import (
    BENCH_PEERS,
    finish,
    forecast_peers,
    from_intervals,
    interval_levels,
)
from supplyml.validation import load_panel

log = logging.getLogger("benchmarks.peers")

# WRMSSE reported in the product issue for the same setup (1,744 SKUs, last 28 days held out).
REFERENCE_WRMSSE = {
    "window_average": 0.984,
    "adida": 0.990,
    "croston": 1.005,
    "auto_ets": 1.014,
    "seasonal_naive": 1.309,
    "lightgbm": 1.003,
}
COLUMNS = ["wrmsse", "reference_wrmsse", "wspl", "coverage_50", "coverage_95", "bias", "seconds"]
PACKAGES = ["statsforecast", "mlforecast", "lightgbm", "pandas", "numpy"]


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def _mlforecast_intervals(fit, horizon, quantiles, method, seed, n_jobs) -> pd.DataFrame:
    from mlforecast.utils import PredictionIntervals

    from supplyml.forecasting.gbm import make_mlforecast

    intervals = PredictionIntervals(n_windows=BACKTESTS, h=horizon, method=method)
    raw = (
        make_mlforecast(seed, n_jobs)
        .fit(fit, static_features=[], prediction_intervals=intervals)
        .predict(h=horizon, level=interval_levels(quantiles))
    )
    return finish(from_intervals(raw, "lightgbm", quantiles), "lightgbm", quantiles)


def _compare_lightgbm_intervals(fit, test, horizon, quantiles, seed, n_jobs) -> dict[str, dict]:
    fit = fit[["unique_id", "ds", "y"]]
    lengths = fit.groupby("unique_id").size()
    keep = lengths.index[lengths >= BACKTESTS * horizon + 1]
    fit, test = fit[fit["unique_id"].isin(keep)], test[test["unique_id"].isin(keep)]
    log.info("interval comparison on the %d series with >= %d days", len(keep), BACKTESTS * horizon + 1)
    runs = {
        "lightgbm pooled conformal": lambda: forecast_peers(
            fit, horizon, quantiles, models=("lightgbm",), n_jobs=n_jobs, seed=seed
        )["lightgbm"]
    }
    for method in ("conformal_distribution", "conformal_error"):
        runs[f"lightgbm mlforecast {method}"] = lambda method=method: _mlforecast_intervals(
            fit, horizon, quantiles, method, seed, n_jobs
        )
    rows = {}
    for name, run in runs.items():
        log.info("forecasting with %s", name)
        start = time.perf_counter()
        fc = run()
        seconds = time.perf_counter() - start
        rows[name] = {**evaluate_forecasts(fit, test, fc, quantiles), "seconds": seconds}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/peers.json"))
    parser.add_argument("--models", nargs="+", default=list(BENCH_PEERS), choices=list(BENCH_PEERS))
    parser.add_argument("--n-jobs", type=int, default=None, help="default: evaluation.n_jobs")
    parser.add_argument("--config", type=Path, default=None, help="YAML config (default: configs/default.yaml)")
    parser.add_argument("--compare-lightgbm-intervals", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    cfg = load_config(args.config)
    n_jobs = args.n_jobs or cfg.evaluation.n_jobs
    panel = load_panel(cfg)
    split = Split.from_panel(panel, cfg.features)
    fit, test = split.fit(panel), split.test(panel)
    horizon, quantiles = cfg.features.horizon, cfg.evaluation.quantiles
    log.info(
        "%d series, fit to %s, test %s..%s",
        fit["unique_id"].nunique(),
        fit["ds"].max().date(),
        test["ds"].min().date(),
        test["ds"].max().date(),
    )

    rows = {}
    for name in args.models:
        log.info("forecasting with %s", name)
        start = time.perf_counter()
        fc = forecast_peers(
            fit, horizon, quantiles, season_length=cfg.evaluation.season_length, models=(name,), n_jobs=n_jobs, seed=cfg.seed
        )[name]
        seconds = time.perf_counter() - start
        metrics = evaluate_forecasts(fit, test[["unique_id", "ds", "y"]], fc, quantiles)
        rows[name] = {**metrics, "seconds": seconds, "reference_wrmsse": REFERENCE_WRMSSE.get(name)}

    table = pd.DataFrame.from_dict(rows, orient="index")[COLUMNS]
    table.index.name = "peer"
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    comparison = None
    if args.compare_lightgbm_intervals:
        comparison = _compare_lightgbm_intervals(fit, test[["unique_id", "ds", "y"]], horizon, quantiles, cfg.seed, n_jobs)
        compared = pd.DataFrame.from_dict(comparison, orient="index")[[c for c in COLUMNS if c != "reference_wrmsse"]]
        compared.index.name = f"intervals, {int(comparison[next(iter(comparison))]['n_series'])} series"
        print()
        print(compared.to_string(float_format=lambda v: f"{v:.3f}"))

    result = {
        "setup": {
            "n_series": int(fit["unique_id"].nunique()),
            "fit_end": str(fit["ds"].max().date()),
            "test_start": str(test["ds"].min().date()),
            "test_end": str(test["ds"].max().date()),
            "horizon": horizon,
            "quantiles": quantiles,
            "season_length": cfg.evaluation.season_length,
            "n_jobs": n_jobs,
            "seed": cfg.seed,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "packages": {pkg: _version(pkg) for pkg in PACKAGES},
        },
        "peers": rows,
    }
    if comparison is not None:
        result["lightgbm_interval_comparison"] = comparison
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
