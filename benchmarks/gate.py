"""The gate measured: false promotions in A/A trials, power against a weak champion, and the smallest
improvement the default evidence detects.

Every trial fits the forecaster recipe (selection over the configured candidates, calibration) on the
days before the pipeline's first held-out origin with its own seed, and scores it at the held-out
origins (`features.test_origins` x `features.horizon`), as the pipeline's evaluate step does.

- A/A: seed k against seed k - 1 as champion (k = 1..N: every trial has its own champion, so one odd seed
  does not decide them all), by the current rule (`gate.decide` on paired
  evidence) at `gate.margin` and at the other margins in MARGINS, and by the rule before it on the same
  trials: WRMSSE at most 2% worse and total cost not higher, both on the last origin alone, the one
  window it used to read.
- Power: the same N models against a weak champion, seasonal naive alone.
- Detectable effect: each A/A challenger's per-series RMSSE scaled by (1 - d) before the test; the
  smallest d promoted in >= 80% of trials is the improvement the default evidence detects with 80% power.

    .venv/bin/python benchmarks/gate.py [--trials 20] [--set features.max_series=300 ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import mlflow
import pandas as pd

from supplyml import evidence, gate
from supplyml.config import load_config
from supplyml.features import Split
from supplyml.forecasting import backtest
from supplyml.forecasting.train import train_final
from supplyml.validation import load_panel

log = logging.getLogger("benchmarks.gate")
EFFECTS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)
MARGINS = (0.0, 0.005, 0.01, 0.02)  # gate.margin: the A/A rate of each, on the same trials


def fitted(panel: pd.DataFrame, cfg, seed: int, overrides: dict | None = None):
    c = cfg.model_copy(update={"seed": seed, **(overrides or {})})
    with mlflow.start_run(run_name=f"seed-{seed}", nested=True):  # train_final logs into the active run
        return train_final(Split.from_panel(panel, c.features).fit(panel), c, {})[0]


def old_rule(ours: backtest.Backtest, theirs: backtest.Backtest) -> bool:
    """The rule before paired evidence: the last origin's WRMSSE at most 2% worse, total cost not higher."""
    last = ours.per_origin["origin"].max()

    def on_last(result):
        model = result.per_origin[(result.per_origin["origin"] == last) & (result.per_origin["model"] == backtest.MODEL)]
        cost = result.units[result.units["origin"] == last]["forecast.total_cost"].sum()
        return float(model["wrmsse"].iloc[0]), float(cost)

    (w, c), (w0, c0) = on_last(ours), on_last(theirs)
    return w / w0 - 1 <= 0.02 and c <= c0


def new_rule(cfg, ours, theirs, effect: float = 0.0, margin: float | None = None) -> tuple[bool, list]:
    if margin is not None:
        cfg = cfg.model_copy(update={"gate": cfg.gate.model_copy(update={"margin": margin})})
    mine = gate.units(ours).assign(rmsse=lambda u: u["rmsse"] * (1 - effect))
    comparisons = gate.paired(mine, gate.units(theirs), [gate.PRIMARY, *gate.GUARDS], cfg.gate, cfg.seed)
    verdict = gate.decide(gate.figures(ours, cfg), gate.figures(theirs, cfg), cfg.gate, "0", comparisons)
    return verdict.promote, comparisons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + trials")
    parser.add_argument("--set", action="append", default=["features.max_series=300"])
    parser.add_argument("--out", default="benchmarks/results/gate.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    cfg = load_config(overrides=args.set)
    mlflow.set_tracking_uri("sqlite:///.supplyml/bench-gate.db")  # train_final logs to the active run
    panel = load_panel(cfg)
    starts = Split.from_panel(panel, cfg.features).origins()
    t0 = time.perf_counter()
    with mlflow.start_run(run_name="bench-gate"):
        previous = gate.score(panel, starts, fitted(panel, cfg, args.first_seed), cfg)
        naive = gate.score(
            panel,
            starts,
            fitted(panel, cfg, 0, {"selection": cfg.selection.model_copy(update={"candidates": ["seasonal_naive"]})}),
            cfg,
        )
        rows = []
        for seed in range(args.first_seed + 1, args.first_seed + args.trials + 1):
            t = time.perf_counter()
            ours = gate.score(panel, starts, fitted(panel, cfg, seed), cfg)
            champion, previous = previous, ours  # each trial a new pair: seed k against seed k - 1
            promoted, comparisons = new_rule(cfg, ours, champion)
            row = {
                "seed": seed,
                "new_rule_promotes": promoted,
                "old_rule_promotes": old_rule(ours, champion),
                **{f"aa_promotes_at_margin_{m:g}": new_rule(cfg, ours, champion, margin=m)[0] for m in MARGINS},
                "wrmsse": comparisons[0].challenger,
                "champion_wrmsse": comparisons[0].champion,
                "p_better": comparisons[0].p_better,
                "p_worse": comparisons[0].p_worse,
                "beats_naive": new_rule(cfg, ours, naive)[0],
                **{f"promoted_at_{d:g}": new_rule(cfg, ours, champion, d)[0] for d in EFFECTS[1:]},
                "seconds": time.perf_counter() - t,
            }
            rows.append(row)
            log.info("trial %d: %s", seed, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    trials = pd.DataFrame(rows)
    power = {f"{d:g}": float(trials[f"promoted_at_{d:g}"].mean()) for d in EFFECTS[1:]}
    detectable = next((d for d in EFFECTS[1:] if power[f"{d:g}"] >= 0.8), None)
    result = {
        "panel": {"series": int(panel["unique_id"].nunique()), "origins": [str(s.date()) for s in starts], "overrides": args.set},
        "trials": args.trials,
        "seeds": [args.first_seed, args.first_seed + args.trials],
        "alpha": cfg.gate.alpha,
        "test": evidence.TEST,
        "aa_false_promotions_new_rule": float(trials["new_rule_promotes"].mean()),
        "aa_false_promotions_old_rule": float(trials["old_rule_promotes"].mean()),
        "margin": cfg.gate.margin,
        "aa_false_promotions_by_margin": {f"{m:g}": float(trials[f"aa_promotes_at_margin_{m:g}"].mean()) for m in MARGINS},
        "power_vs_seasonal_naive": float(trials["beats_naive"].mean()),
        "naive_wrmsse": float(gate.figures(naive, cfg)["wrmsse"]),
        "promotion_rate_by_relative_improvement": power,
        "smallest_improvement_with_80pct_power": detectable,
        "seconds": time.perf_counter() - t0,
        "per_trial": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=float))
    print(f"\nGate bench: {args.trials} trials, {result['panel']['series']} series, origins {result['panel']['origins']}")
    print(f"{'measure':<52} {'value':>8}")
    for label, value in [
        (f"A/A false promotions, paired rule (margin {cfg.gate.margin:g})", result["aa_false_promotions_new_rule"]),
        *((f"A/A false promotions at margin {m}", r) for m, r in result["aa_false_promotions_by_margin"].items()),
        ("A/A false promotions, previous one-window rule", result["aa_false_promotions_old_rule"]),
        ("power against seasonal naive", result["power_vs_seasonal_naive"]),
        *((f"promotion rate, challenger {float(d):.1%} better", p) for d, p in power.items()),
    ]:
        print(f"{label:<52} {value:>8.2f}")
    print(f"smallest improvement detected with 80% power: {detectable}")


if __name__ == "__main__":
    main()
