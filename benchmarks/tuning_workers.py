"""Wall time of the same Optuna study with 1 and with 2 workers on PostgreSQL.

The Online Retail panel (train days of the pipeline's split), `tune.n_trials` trials of the tune step's
search, run by N worker processes on one study in a PostgreSQL started here (pgserver) exactly as the
pipeline's ParallelFor runs them: `supplyml.tune.create`, then N x `supplyml.tune.work`, then `finish`.
Each setting gets its own database, so every run starts from an empty study. With several workers, each
takes cores / N torch threads (supplyml.tune.work does that), as they share this machine.

    .venv/bin/python benchmarks/tuning_workers.py [--trials 8] [--series 2000] [--out benchmarks/results/tuning_workers.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cfg, panel_path: Path, workers: int, url: str, tmp: Path) -> dict:
    import optuna

    from supplyml import tune
    from supplyml.forecasting.search import ForecastSearch

    os.environ["SUPPLYML_OPTUNA_STORAGE"] = url
    cfg = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"workers": workers})})
    cfg_path = tmp / f"cfg-{workers}.json"
    cfg_path.write_text(cfg.to_json())
    start = time.perf_counter()
    tune.create(cfg, ForecastSearch(None, cfg, "bench"))
    worker = [sys.executable, "-m", "supplyml.forecasting.search", str(cfg_path), str(panel_path), "bench"]
    procs = [
        subprocess.Popen([*worker, str(w)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for w in range(workers)
    ]
    per_worker = [int(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    study = tune.finish(cfg, ForecastSearch(None, cfg, "bench"))
    wall = time.perf_counter() - start
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {
        "workers": workers,
        "wall_s": round(wall, 1),
        "finished": sum(s in tune.FINISHED for s in states),
        "pruned": sum(s == optuna.trial.TrialState.PRUNED for s in states),
        "per_worker": per_worker,
        "best_val_loss": round(study.best_value, 4),
    }


def main() -> int:
    import pgserver

    from supplyml.config import load_config
    from supplyml.features import Split
    from supplyml.validation import load_panel

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--series", type=int, default=2000, help="features.max_series (default 2000: all of Online Retail)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tuning_workers.json")
    args = parser.parse_args()
    cfg = load_config(
        overrides=[f"tune.n_trials={args.trials}", f"features.max_series={args.series}", "tune.timeout_s=3600"]
    ).resolved(ROOT)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        import mlflow

        mlflow.MlflowClient().search_experiments()  # the schema once, before the workers
        panel = load_panel(cfg)
        panel_path = tmp / "panel.parquet"
        Split.from_panel(panel, cfg.features).fit(panel).to_parquet(panel_path)
        server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
        socket_dir = server.get_uri().split("host=")[1]
        rows = []
        try:
            for workers in (1, 2):
                name = f"bench_{workers}"
                server.psql(f'CREATE DATABASE "{name}";')
                rows.append(run(cfg, panel_path, workers, f"postgresql+psycopg2://postgres:@/{name}?host={socket_dir}", tmp))
                print(rows[-1], flush=True)
        finally:
            server.cleanup()
    header = ["workers", "wall_s", "finished", "pruned", "per_worker", "best_val_loss"]
    print(f"\n{args.trials} trials, {panel['unique_id'].nunique()} series, {cores} cores ({platform.machine()})")
    print(" | ".join(header))
    for r in rows:
        print(" | ".join(str(r[h]) for h in header))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"trials": args.trials, "series": int(panel["unique_id"].nunique()), "cores": cores, "runs": rows}, indent=2)
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
