"""What one paired comparison costs as the series grow: `evidence.compare` on series x 3 origins.

Every gate calls it several times per run (the forecaster's claim, guards and peer bar; each policy
against each other and the service bar), always on all the series of the run. Each size runs in a fresh
interpreter, so its peak resident set is the comparison's own (above the ~0.2 GB of imports). The units:
gamma-distributed total costs, the challenger 1% cheaper with 5% noise per unit.

    .venv/bin/python benchmarks/evidence.py [--sizes 1000 4000 16000 32000] [--out benchmarks/results/evidence.json]

Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
ORIGINS = 3


def one(series: int) -> dict:
    from supplyml import evidence

    rng = np.random.default_rng(1)
    cost = rng.gamma(2.0, 50.0, size=ORIGINS * series)
    frame = pd.DataFrame(
        {
            "block": np.tile(np.arange(series), ORIGINS),
            "origin": np.repeat(np.arange(ORIGINS), series),
            "champion": cost,
            "challenger": cost * (1 + rng.normal(-0.01, 0.05, cost.size)),
        }
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    c = evidence.compare("total_cost", frame, greater_is_better=False)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "series": series,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak),
        "added_rss_mb": round(peak - before),
        "difference": c.difference,
        "interval": [c.low, c.high],
        "p_better": c.p_better,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000, 32000])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "evidence.json")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child: one size, JSON on stdout
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one)))
        return 0
    rows = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], cwd=ROOT, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.splitlines()[-1]))
        print(f"{n} series: {rows[-1]['seconds']} s, +{rows[-1]['added_rss_mb']} MB", flush=True)
    table = pd.DataFrame(rows).set_index("series")[["seconds", "added_rss_mb", "peak_rss_mb", "p_better"]]
    print(table.to_string())
    facts = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "origins": ORIGINS}
    args.out.write_text(json.dumps({**facts, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
