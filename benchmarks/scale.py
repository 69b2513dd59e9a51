"""How the pipeline's cost grows with the number of series: wall time and peak memory per step.

For each size, a seeded panel from the team's generator (`make_multistore.py`: smooth, slow and
intermittent items, promotions, events; `--years` of daily rows, 10 stores x size/10 items) goes
through `supplyml pipeline run` exactly as a user runs it, on kfp.local with the default config: the
forecasting path and the replenishment path, tune to package (panel data has no customers, so no
recommender). Each step's wall time is the run's own step line; its peak memory is the largest
proportional set size (PSS) of the step's process tree, sampled every `--every` seconds: a page shared
by a step and the workers it forks counts once, as the machine holds it (the sum of their resident sets,
also recorded, counts it in each). kfp.local runs each step in its own interpreter, which names the step
in its arguments. Then, per step, the exponent b of
time ~ a * series^b, fitted by least squares on the logs over the sizes that ran.

    .venv/bin/python benchmarks/scale.py [--sizes 1000 4000 16000 32000] [--set KEY=VALUE ...]

Writes benchmarks/results/scale/scale.json and prints the table. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from make_multistore import MAPPING, Shape, generate

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "scale"
STEP = re.compile(r"^  ([\w-]+)\s+(success|failure|skipped)\s+([\d.]+) s$")
# A step's executor input names its own output file, in its task's folder (inside a loop's for a loop's task).
TASK = re.compile(r'"outputFile":\s*"[^"]*/kfp/[^/"]+/(?:for-loop-[^/"]+/)?([\w-]+)/executor_output\.json')
STORES = 10


def panel(series: int, years: int, folder: Path, seed: int) -> Path:
    """A generated panel of `series` series (10 stores), `years` of days up to the end of 2023."""
    start = f"{2024 - years}-01-01"
    frame = generate(seed, Shape(stores=STORES, items=series // STORES, start=start, end="2023-12-31"))
    path = folder / f"panel-{series}.parquet"
    frame.to_parquet(path, index=False)
    return path


def run(data: Path, workdir: Path, sets: list[str], every: float) -> dict:
    """`supplyml pipeline run` on `data`: per step its wall seconds and peak PSS and RSS (MB), and the run's totals."""
    args = ["--data", str(data), "--format", "panel", "--set", f"workdir={workdir}"]
    args += [a for k, v in MAPPING.items() for a in ("--set", f"data.panel_columns.{k}={v}")]
    args += [a for s in sets for a in ("--set", s)]
    start = time.monotonic()
    command = [sys.executable, "-m", "cli", "pipeline", "run", *args]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[tuple[str, str], float] = {}  # (task, "pss" or "rss") -> MB
    done = threading.Event()

    def sample() -> None:  # per step, the largest sums over its process tree (a step's workers are its children)
        root = psutil.Process(proc.pid)
        while not done.is_set():
            tasks: dict[int, str] = {}  # pid -> the step whose process it is or descends from
            now: dict[tuple[str, str], float] = {}
            for p in [root, *root.children(recursive=True)]:  # parents before their children
                try:
                    memory = p.memory_full_info()
                    m = TASK.search(" ".join(p.cmdline()))
                    tasks[p.pid] = m.group(1) if m else tasks.get(p.ppid(), "(run)")
                except psutil.Error:  # it ended between listing and reading
                    continue
                for kind in ("pss", "rss"):
                    for key in {(tasks[p.pid], kind), ("(run)", kind)}:
                        now[key] = now.get(key, 0.0) + getattr(memory, kind) / 2**20
            for key, mb in now.items():
                peaks[key] = max(peaks.get(key, 0.0), mb)
            done.wait(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    done.set()
    sampler.join()
    steps = {}
    for line in output.splitlines():
        if m := STEP.match(line):
            name, status, seconds = m.groups()
            steps[name] = {
                "status": status,
                "seconds": float(seconds),
                "peak_pss_mb": round(peaks.get((name, "pss"), 0.0)),
                "peak_rss_mb": round(peaks.get((name, "rss"), 0.0)),
            }
    return {
        "returncode": proc.returncode,
        "seconds": round(time.monotonic() - start, 1),
        "peak_pss_mb": round(peaks.get(("(run)", "pss"), 0.0)),
        "peak_rss_mb": round(peaks.get(("(run)", "rss"), 0.0)),
        "steps": steps,
        "tail": output.splitlines()[-20:] if proc.returncode else [],
    }


def exponents(results: dict[int, dict], figure: str = "seconds") -> dict[str, float]:
    """Per step (and the whole run), b in figure ~ a * series^b over the sizes where it succeeded; `figure`
    is "seconds" or "peak_pss_mb"."""
    sizes = sorted(results)
    names = {n for r in results.values() for n in r["steps"]}
    fits = {}
    for name in sorted(names) + ["(run)"]:
        points = [
            (n, results[n][figure] if name == "(run)" else results[n]["steps"][name][figure])
            for n in sizes
            if name == "(run)" or (name in results[n]["steps"] and results[n]["steps"][name]["status"] == "success")
        ]
        if len(points) >= 2:
            x, y = np.log([p[0] for p in points]), np.log([max(p[1], 0.05) for p in points])
            fits[name] = round(float(np.polyfit(x, y, 1)[0]), 2)
    return fits


def table(results: dict[int, dict], fits: dict[str, float], memory: dict[str, float]) -> str:
    sizes = sorted(results)
    names = list(dict.fromkeys(n for s in sizes for n in results[s]["steps"]))
    rows = {}
    for name in names:
        row = {}
        for s in sizes:
            step = results[s]["steps"].get(name)
            row[f"{s} s"] = step["seconds"] if step else np.nan
            row[f"{s} MB"] = step["peak_pss_mb"] if step else np.nan
        rows[name] = {**row, "time exponent": fits.get(name, np.nan), "memory exponent": memory.get(name, np.nan)}
    rows["(run)"] = {
        **{k: v for s in sizes for k, v in ((f"{s} s", results[s]["seconds"]), (f"{s} MB", results[s]["peak_pss_mb"]))},
        "time exponent": fits.get("(run)", np.nan),
        "memory exponent": memory.get("(run)", np.nan),
    }
    return pd.DataFrame(rows).T.to_string(float_format=lambda v: f"{v:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000, 32000])
    parser.add_argument("--years", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between memory samples")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            data = panel(n, args.years, Path(tmp), args.seed)
            results[n] = {"series": n, "days": 365 * args.years, **run(data, Path(tmp) / f"work-{n}", args.sets, args.every)}
            data.unlink()
            print(f"{n} series: {results[n]['seconds']:.0f} s, peak PSS {results[n]['peak_pss_mb']} MB", flush=True)
            if results[n]["returncode"]:
                print("\n".join(results[n]["tail"]), file=sys.stderr)
                break
    fits, memory = exponents(results), exponents(results, "peak_pss_mb")
    facts = {"sizes": args.sizes, "years": args.years, "sets": args.sets, "results": results}
    (args.out / "scale.json").write_text(json.dumps({**facts, "exponents": fits, "memory_exponents": memory}, indent=1))
    print(table(results, fits, memory))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
