"""One table over every `make bench` dataset: the champion against the best peer, and its calibration.

Reads benchmarks/results/*/results.json, prints the table and writes benchmarks/results/summary.json.

    .venv/bin/python benchmarks/summary.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
CHAMPION = "supplyml"


def row(name: str, r: dict) -> dict:
    avg = r["average"]
    peers = {k: v for k, v in avg.items() if k != CHAMPION}
    best_w = min(peers, key=lambda k: peers[k]["wrmsse"])
    best_s = min(peers, key=lambda k: peers[k]["wspl"])
    champ, cal, inv = avg[CHAMPION], r["calibration"], r["inventory"]
    return {
        "dataset": name,
        "series": r["series"],
        "days": r["days"],
        "horizon": r["horizon"],
        "wrmsse": champ["wrmsse"],
        "best_peer_wrmsse": peers[best_w]["wrmsse"],
        "best_peer": best_w,
        "wrmsse_gain": 1 - champ["wrmsse"] / peers[best_w]["wrmsse"],
        "wspl": champ["wspl"],
        "best_peer_wspl": peers[best_s]["wspl"],
        "best_wspl_peer": best_s,
        "cov50_daily": cal["daily_coverage_50"],
        "cov95_daily": cal["daily_coverage_95"],
        "cov50_total": cal["total_coverage_50"],
        "cov95_total": cal["total_coverage_95"],
        "csl": cal["cycle_service_level"],
        "csl_target": cal["target_service_level"],
        "cost": inv["forecast base stock"]["total_cost"],
        "classical_cost": inv["28-day MA + normal safety stock"]["total_cost"],
        # The textbook policy /replenish serves (base stock only where it wins on the paired units).
        **_served(r.get("served_policy"), inv),
        "chosen": "; ".join(s["chosen"] for s in r.get("selection", [])),
        "minutes": r["seconds"] / 60,
    }


def _served(served: dict | None, inv: dict) -> dict:
    if served is None:  # results written before the bench chose the served policy
        return {}
    row = inv[served["row"]]
    return {"served": served["served"], "served_csl": row["cycle_service_level"], "served_cost": row["total_cost"]}


def main() -> int:
    found = {p.parent.name: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*/results.json"))}
    rows = [row(name, r) for name, r in found.items() if "average" in r]  # forecast benches, not policy-*
    table = pd.DataFrame(rows).set_index("dataset")
    (RESULTS / "summary.json").write_text(json.dumps(rows, indent=2))
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.drop(columns=["chosen"]).round(3).to_string())
        print(table["chosen"].to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
