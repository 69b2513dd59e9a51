"""Evaluate: the forecaster against classical peers on the held-out horizon, as a table and an HTML report."""
from __future__ import annotations

import html
import logging
import time

import pandas as pd

from supplyml.baselines import forecast_peers
from supplyml.config import Config
from supplyml.forecaster import Forecaster
from supplyml.metrics import evaluate_forecasts

log = logging.getLogger(__name__)
MODEL = "supplyml"
COLUMNS = ["wrmsse", "mase", "wspl", "coverage_50", "coverage_95", "bias", "seconds"]


def backtest(forecaster: Forecaster, fit: pd.DataFrame, test: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """One row per model: the forecaster first, then each peer, all scored on the same days."""
    horizon, quantiles = cfg.features.horizon, cfg.evaluation.quantiles
    test = test[["unique_id", "ds", "y"]]
    start = time.perf_counter()
    forecasts = {MODEL: forecaster.predict(None, horizon, quantiles, cfg.model.num_samples, seed=cfg.seed)}
    seconds = {MODEL: time.perf_counter() - start}
    start = time.perf_counter()
    forecasts.update(forecast_peers(fit, horizon, quantiles, season_length=cfg.evaluation.season_length))
    seconds.update({name: (time.perf_counter() - start) / (len(forecasts) - 1) for name in forecasts if name != MODEL})
    rows = {name: {**evaluate_forecasts(fit, test, fc, quantiles), "seconds": seconds[name]}
            for name, fc in forecasts.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")[COLUMNS]
    table.index.name = "model"
    return table


def format_table(table: pd.DataFrame) -> str:
    return table.to_string(float_format=lambda v: f"{v:.3f}")


def html_report(table: pd.DataFrame, lineage: dict[str, str]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in lineage.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>supplyml evaluation</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
        "<h1>Evaluation on the held-out horizon</h1>"
        f"{table.to_html(float_format=lambda v: f'{v:.3f}')}"
        "<p>WRMSSE and WSPL are weighted by each series' units in the last 28 training days; "
        "WSPL covers M5's nine quantiles. Lower is better; coverage should match its level.</p>"
        f"<h2>Lineage</h2><table>{rows}</table></body></html>"
    )
