"""Where order decisions fail: the forecast of lead-time + review totals, or the replay.

At one rolling origin of a dataset, each recipe's forecast policy is replayed as `supplyml bench`
does (re-conditioned on actuals at every review), and three figures are set side by side:
- coverage of the 50% and 95% intervals of L+R totals, read from the very paths the policy orders from;
- within_S: the share of review windows whose actual L+R total stayed at or below S; if it is far
  below the target, the totals are too narrow (or biased), whatever the daily marginals say;
- the realised cycle service level of the replay; if it is far from within_S, the replay is at fault.

Recipes: the network alone as before selection and calibration existed (copula correlation 0, then
0.5), the network alone calibrated on validation origins, and the full selection (the champion).
Prints a table and writes DIR/decisions.json.

    .venv/bin/python benchmarks/decisions.py --data data/long/long.parquet --format panel --set ... --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from supplyml.config import load_config
from supplyml.forecasting import backtest
from supplyml.forecasting.base import Calibration
from supplyml.forecasting.networks import NetworkForecaster
from supplyml.forecasting.selection import select
from supplyml.validation import load_panel

log = logging.getLogger("benchmarks.decisions")


def replay(panel: pd.DataFrame, start: pd.Timestamp, model, cfg) -> dict[str, float]:
    h = cfg.features.horizon
    fit, test = backtest.window(panel, start, h)
    sims, t = backtest.simulate_policies(panel, fit, test, model, cfg)
    return {
        "total_coverage_50": float(((t["q0.25"] <= t["actual"]) & (t["actual"] <= t["q0.75"])).mean()),
        "total_coverage_95": float(((t["q0.025"] <= t["actual"]) & (t["actual"] <= t["q0.975"])).mean()),
        "within_S": float((t["actual"] <= t["S"]).mean()),
        "cycle_service_level": sims["forecast"].summary()["cycle_service_level"],
        "classical_csl": sims["classical"].summary()["cycle_service_level"],
        "total_cost": sims["forecast"].summary()["total_cost"],
        "classical_cost": sims["classical"].summary()["total_cost"],
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data")
    parser.add_argument("--format", choices=["transactions", "panel"])
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--origin", type=int, default=-1, help="which bench origin (default: the last)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sets = [
        *args.set,
        *([f"data.path={json.dumps(args.data)}"] if args.data else []),
        *([f"data.format={args.format}"] if args.format else []),
    ]
    cfg = load_config(None, sets)
    panel = load_panel(cfg)
    start = backtest.origins(panel, cfg.features.horizon, cfg.evaluation.origins)[args.origin]
    fit = panel[panel["ds"] < start]
    rows = {}
    network = NetworkForecaster.fit(fit, cfg.model, cfg.features.horizon, seed=cfg.seed)[0]
    for rho in (0.0, 0.5):
        network.calibration = Calibration(rho=rho)
        rows[f"network, uncalibrated, rho {rho}"] = replay(panel, start, network, cfg)
    alone = cfg.model_copy(update={"selection": cfg.selection.model_copy(update={"candidates": ["network"]})})
    rows["network, calibrated"] = replay(panel, start, select(fit, alone, cfg.model)[0], cfg)
    champion, evidence = select(fit, cfg, cfg.model)
    rows[f"champion: {evidence['chosen']}"] = replay(panel, start, champion, cfg)
    table = pd.DataFrame(rows).T
    print(f"origin {start.date()}, target cycle service level {cfg.inventory.service_level}")
    print(table.round(3).to_string())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decisions.json").write_text(json.dumps({"origin": str(start.date()), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
