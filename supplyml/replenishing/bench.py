"""`supplyml bench --family policy`: learned replenishment policies against exact references and against
the stack's own policies on real demand. Writes results.json and prints both tables.

Known instances (Zipkin 2008): each algorithm's settings come from its Optuna study on one lead time
(`policy.tune_lead_time`, trial seeds 100+); then every lead time is trained once per `policy.seeds`
seed and costed exactly (the dynamic program) and by a long simulated run on one demand stream for all
(common random numbers). Intervals are Student t over the seeds.

Real demand (`supplyml.replenishing.real`): at each of `evaluation.origins` rolling origins of the
configured data, the pipeline's recipe is selected and fitted on the days before it (configured
hyperparameters, no Optuna study); the learned policy (`policy.algorithm`) is trained on that
forecaster's paths at the origin's reviews once per seed, and every policy is replayed on the actual
demand. Origins are pooled; the learned policy's interval is over its training seeds.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import platform
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from supplyml.config import Config
from supplyml.replenishing import known
from supplyml.replenishing.learned import ALGORITHMS, train

log = logging.getLogger(__name__)


def tuned_params(cfg: Config, algorithm: str) -> tuple[dict, list[dict]]:
    """The algorithm's configured settings with its study's best on top, and the study's trials."""
    import mlflow

    from supplyml import tracking
    from supplyml import tune as tuning
    from supplyml.replenishing.search import PolicySearch

    tuned = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"n_trials": cfg.policy.tune_trials, "workers": 1})})
    tracking.setup_tracking(tuned)
    with mlflow.start_run(run_name=f"bench-policy-{algorithm}", tags={"supplyml.kind": "bench"}):
        study = tuning.tune(PolicySearch(tuned, algorithm), tuned, {"supplyml.kind": "bench"})
    trials = [
        {"params": t.user_attrs["model"], "average_cost": t.value, "seconds": t.duration.total_seconds()}
        for t in study.trials
        if t.value is not None and t.duration is not None
    ]
    return {**cfg.policy.params[algorithm], **tuning.best_model(study)}, trials


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # a run per core: two threads each would only contend


def _known_run(cfg: Config, algorithm: str, params: dict, lead_time: int, seed: int) -> dict:
    t0 = time.perf_counter()
    system = known.instance(lead_time)
    model = train(algorithm, known.environment(system, cfg.policy.known_envs, seed), params, cfg.policy.known_timesteps, seed)
    seconds = time.perf_counter() - t0
    return {
        "algorithm": algorithm,
        "lead_time": lead_time,
        "seed": seed,
        "train_seconds": seconds,
        "exact": known.exact_cost(system, model),
        "simulated": known.simulated_cost(system, known.learned(model), cfg.policy.eval_periods),
    }


def known_instances(cfg: Config) -> dict:
    from supplyml import tracking
    from supplyml import tune as tuning

    p = cfg.policy
    tracking.setup_tracking(cfg)  # the stores' schemas once, before two processes race to create them
    tuning.storage(cfg)
    # A run per core: these networks are too small for one run to keep two cores busy.
    pool = ProcessPoolExecutor(
        len(os.sched_getaffinity(0)), mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread
    )
    with pool:
        tune_jobs = {a: pool.submit(tuned_params, cfg, a) for a in ALGORITHMS}
        ref_jobs = {L: pool.submit(known.references, known.instance(L)) for L in p.known_lead_times}
        tuned = {a: f.result() for a, f in tune_jobs.items()}
        run_jobs = [
            pool.submit(_known_run, cfg, a, tuned[a][0], L, s) for L in p.known_lead_times for a in ALGORITHMS for s in p.seeds
        ]
        runs = [f.result() for f in run_jobs]
        refs = {L: f.result() for L, f in ref_jobs.items()}
    rows = []
    for L in p.known_lead_times:
        system, ref = known.instance(L), refs[L]
        row: dict[str, Any] = {
            **ref,
            "simulated": {
                name: known.simulated_cost(system, known.heuristic(rule), p.eval_periods)
                for name, rule in known.reference_policies(ref).items()
            },
        }
        for a in ALGORITHMS:
            mine = [r for r in runs if r["lead_time"] == L and r["algorithm"] == a]
            row[a] = {
                "exact": known.interval([r["exact"] for r in mine]),
                "simulated": known.interval([r["simulated"] for r in mine]),
                "train_seconds": sum(r["train_seconds"] for r in mine) / len(mine),
                "runs": mine,
            }
        rows.append(row)
    return {"rows": rows, "params": {a: t[0] for a, t in tuned.items()}, "trials": {a: t[1] for a, t in tuned.items()}}


def known_table(result: dict) -> str:
    algos = list(ALGORITHMS)
    head = (
        "| L | optimal (Zipkin) | standard base stock (Zipkin) | best capped base stock (Zipkin) | "
        + " | ".join(f"{a.upper()} exact | {a.upper()} simulated | {a.upper()} gap to optimal" for a in algos)
        + " |"
    )
    lines = [head, "|---" * (4 + 3 * len(algos)) + "|"]
    for r in result["rows"]:
        z = r["zipkin"]
        cells = [
            str(r["lead_time"]),
            f"{r['optimal']:.3f} ({z.get('optimal', '-')})",
            f"{r['standard_base_stock']:.3f} ({z.get('standard_base_stock', '-')})",
            f"{r['capped_base_stock']:.3f} ({z.get('capped_base_stock', '-')})",
        ]
        for a in algos:
            (m, h), (sm, sh) = r[a]["exact"], r[a]["simulated"]
            cells += [f"{m:.3f} ± {h:.3f}", f"{sm:.3f} ± {sh:.3f}", f"{100 * (m / r['optimal'] - 1):+.1f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def real_demand(cfg: Config, root: str | Path = ".") -> dict:
    from supplyml.config import ModelConfig
    from supplyml.data import data_version
    from supplyml.forecasting import backtest
    from supplyml.forecasting.selection import select
    from supplyml.replenishing import real
    from supplyml.validation import load_panel

    _one_thread()
    panel = load_panel(cfg)
    h = cfg.features.horizon
    starts = backtest.origins(panel, h, cfg.evaluation.origins)
    baselines, seconds = [], []
    learned: dict[int, list] = {s: [] for s in cfg.policy.seeds}
    for start in starts:
        fit, test = backtest.window(panel, start, h)
        forecaster, _ = select(panel[panel["ds"] < start], cfg, ModelConfig(**cfg.model.model_dump()))
        reviews = backtest.reviews(panel, fit, test, forecaster, cfg)
        baselines.append(backtest.policy_simulations(reviews, cfg))
        for seed in cfg.policy.seeds:
            t0 = time.perf_counter()
            learned[seed].append(real.replay(real.fit(reviews, cfg, seed), reviews, cfg))
            seconds.append(time.perf_counter() - t0)
        log.info("origin %s: %d series", start.date(), len(reviews.ids))
    table: dict[str, Mapping[str, float | tuple[float, float]]] = {
        backtest.POLICIES[k]: backtest.pool([b[k] for b in baselines]) for k in backtest.POLICIES
    }
    per_seed = {seed: backtest.pool(runs) for seed, runs in learned.items()}
    table[f"learned ({cfg.policy.algorithm})"] = {
        k: known.interval([per_seed[s][k] for s in cfg.policy.seeds]) for k in next(iter(per_seed.values()))
    }
    return {
        "data": data_version(cfg.data.path, root),
        "series": int(panel["unique_id"].nunique()),
        "origins": [str(s.date()) for s in starts],
        "table": table,
        "learned_per_seed": {str(s): v for s, v in per_seed.items()},
        "train_seconds": sum(seconds) / len(seconds),
        "settings": {
            **cfg.inventory.model_dump(),
            "timesteps": cfg.policy.timesteps,
            "params": cfg.policy.params[cfg.policy.algorithm],
        },
    }


def real_table(result: dict) -> str:
    cols = ("cycle_service_level", "fill_rate", "avg_on_hand", "total_cost")
    base = result["table"]["forecast base stock"]["total_cost"]
    lines = [
        "| policy | cycle service level | fill rate | avg on hand | total cost | vs forecast base stock |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["table"].items():
        cells = []
        for c in cols:
            value, half = row[c] if isinstance(row[c], (list, tuple)) else (row[c], None)
            fmt = "{:,.0f}" if c == "total_cost" else "{:.3f}" if c != "avg_on_hand" else "{:.2f}"
            cells.append(fmt.format(value) + ("" if half is None else " ± " + fmt.format(half)))
        cost = row["total_cost"][0] if isinstance(row["total_cost"], (list, tuple)) else row["total_cost"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {100 * (cost / base - 1):+.1f}% |")
    return "\n".join(lines)


def run(cfg: Config, out_dir: str | Path, root: str | Path = ".") -> dict:
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "setup": {
            "known_timesteps": cfg.policy.known_timesteps,
            "tune_timesteps": cfg.policy.tune_timesteps,
            "tune_trials": cfg.policy.tune_trials,
            "tune_lead_time": cfg.policy.tune_lead_time,
            "seeds": cfg.policy.seeds,
            "eval_periods": cfg.policy.eval_periods,
            "machine": platform.platform(),
        },
        "known": known_instances(cfg) if cfg.policy.known_lead_times else None,
        "real": real_demand(cfg, root) if cfg.policy.real_demand else None,
    }
    result["seconds"] = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps(result, indent=2, default=float))
    return result


def render(cfg: Config, result: dict, out: str) -> str:
    """What `supplyml bench --family policy` prints."""
    s, lines = result["setup"], []
    if result["known"]:
        lines += [
            f"\nLearned policies on Zipkin's lost-sales instances (Poisson mean 5, h = 1, p = 4): long-run average "
            f"cost per period, mean ± 95% t interval over training seeds {s['seeds']}; exact (dynamic program) and "
            f"simulated ({s['eval_periods']:,} periods, one demand stream for all):",
            known_table(result["known"]),
        ]
    if result["real"]:
        r = result["real"]
        lines += [
            f"\nOn real demand ({cfg.data.path}, {r['series']} series; origins {', '.join(r['origins'])}, pooled): "
            f"the learned policy trained on the forecaster's sample paths, every policy replayed on actual demand; "
            f"learned: mean ± 95% t interval over seeds {s['seeds']}:",
            real_table(r),
        ]
    return "\n".join([*lines, f"\nWrote {out}/results.json ({result['seconds']:.0f} s)"])
