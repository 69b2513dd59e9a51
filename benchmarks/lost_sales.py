"""Zipkin (2008)'s lost-sales instances, solved exactly: the optimum, standard base stock, the best base
stock and the best capped base stock, per lead time, against the published figures.

    .venv/bin/python benchmarks/lost_sales.py [--lead-times 1 2 4] [--out benchmarks/results/lost_sales.json]

Poisson demand with mean 5, h = 1, p = 4 (supplyml.replenishing.known). `supplyml bench --family policy` sets
the learned policies beside these.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supplyml.replenishing.known import instance, references  # noqa: E402


def run(lead_time: int) -> dict:
    t0 = time.perf_counter()
    return {**references(instance(lead_time)), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lead-times", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lost_sales.json")
    args = parser.parse_args(argv)
    rows = [run(L) for L in args.lead_times]
    print("| L | optimal (Zipkin) | standard base stock S (Zipkin) | best base stock S | capped base stock S, cap (Zipkin) | s |")
    print("|---|---|---|---|---|---:|")
    for r in rows:
        z = r["zipkin"]
        print(
            f"| {r['lead_time']} | {r['optimal']:.3f} ({z.get('optimal', '-')}) | {r['standard_base_stock']:.3f} "
            f"S={r['standard_level']} ({z.get('standard_base_stock', '-')}) | {r['best_base_stock']:.3f} S={r['best_level']} "
            f"| {r['capped_base_stock']:.3f} S={r['capped_level']}, cap {r['cap']} ({z.get('capped_base_stock', '-')}) "
            f"| {r['seconds']:.0f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"setup": {"mean": 5.0, "holding": 1.0, "penalty": 4.0, "machine": platform.platform()}, "results": rows}, indent=2
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
