"""The recommendation bench: every configured model on one global temporal split of the order history.

1. Validation: each peer is fitted on `train` (catalogue: SKUs seen in train) for every point of its
   grid (`recommend.grid`), and ranks for the customers active in the validation days whom train knows;
   the point with the best `recommend.select_metric` wins. Stochastic peers use the first seed here. The
   product's models (`network`, `blend`) take the served recipe's hyperparameters from the pipeline's
   Optuna search (supplyml.recommending.search) on the same days, in a study of the bench's own.
2. Test: the winners are refitted on train + validation (catalogue: SKUs seen there) and rank for the
   test-window customers it knows; stochastic models once per seed, reported as mean and std.
Writes results.json (the table, chosen params, grid scores, split dates) and rankings.parquet
(`model, customer_id, rank, sku, score`: the test lists, the first seed's for stochastic models).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from supplyml.config import Config
from supplyml.data import content_key, data_version
from supplyml.recommending import metrics
from supplyml.recommending.base import Recommender, recommender
from supplyml.recommending.interactions import catalogue, load_interactions, temporal_split
from supplyml.recommending.peers import PEERS
from supplyml.recommending.scoring import score_window
from supplyml.recommending.search import RecommendSearch, served_params

log = logging.getLogger(__name__)


def grid_points(grid: dict[str, list]) -> list[dict]:
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))] or [{}]


def _fit_score(cls: type[Recommender], params: dict, history: pd.DataFrame, window: pd.DataFrame, k: int):
    t0 = time.perf_counter()
    model = cls(**params).fit(history, catalogue(history))
    scores, lists = score_window(model, history, window, k)
    return scores, lists, time.perf_counter() - t0


def run(
    cfg: Config,
    out_dir: str | Path,
    seeds: Sequence[int] | None = None,
    root: str = ".",
    models: dict[str, type[Recommender]] | None = None,
) -> dict:
    """The bench (see the module docstring): {"summary": what results.json holds, "table": one row per
    model}. `models` defaults to `recommend.models`, looked up among the registered recommenders."""
    rc = cfg.recommend
    seeds = list(rc.seeds if seeds is None else seeds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    models = models or {name: _lookup(name) for name in rc.models}
    data = load_interactions(cfg, root)
    split = temporal_split(data.frame, rc.test_days, rc.val_days)
    base = {"popularity_days": rc.popularity_days, "num_threads": rc.num_threads}

    version = data_version(cfg.data.path, root)
    chosen, grid_scores, rows, tuned = {}, {}, [], None
    frames: list[pd.DataFrame] = []
    for name, cls in models.items():
        shared = {k: v for k, v in base.items() if k in ("popularity_days", *cls.defaults)}
        if name in PEERS:  # a peer: its grid, on validation days
            first = {"seed": seeds[0]} if cls.stochastic else {}
            tried = []
            for point in grid_points(rc.grid.get(name, {})):
                scores, _, secs = _fit_score(cls, {**shared, **first, **point}, split.train, split.val, rc.k)
                tried.append({"params": point, rc.select_metric: scores[rc.select_metric], "seconds": secs})
                log.info("%s %s: validation %s %.4f (%.1f s)", name, point, rc.select_metric, scores[rc.select_metric], secs)
            best = max(tried, key=lambda t: t[rc.select_metric])
        else:  # the product's models: the pipeline's Optuna search for the served recipe, on the same days
            tuned = tuned or _tune(cfg, data.frame, content_key(version))
            best, tried = tuned
        chosen[name], grid_scores[name] = best["params"], tried

        rows.append(_test(name, cls, {**shared, **best["params"]}, split, seeds, rc.k, frames))
    for name, overrides in rc.ablations.items():  # the served recipe with a part switched off
        tuned = tuned or _tune(cfg, data.frame, content_key(version))
        cls = _lookup(rc.model)
        chosen[name] = {**tuned[0]["params"], **overrides}
        rows.append(_test(name, cls, chosen[name], split, seeds, rc.k, frames))

    table = pd.DataFrame(rows).set_index("model")
    pd.concat(frames, ignore_index=True).to_parquet(out / "rankings.parquet", index=False)
    fit, test = split.fit, split.test
    known = test["customer_id"].isin(set(fit["customer_id"]))
    summary = {
        "data": version,
        "split": split.dates(),
        "counts": {
            "train_rows": len(split.train),
            "val_rows": len(split.val),
            "test_rows": len(test),
            "catalogue": int(fit["sku"].nunique()),
            "fit_customers": int(fit["customer_id"].nunique()),
            "test_customers": int(test["customer_id"].nunique()),
            "test_customers_known": int(test.loc[known, "customer_id"].nunique()),
            # relevant but unrankable: SKUs first sold in the test window
            "test_rows_outside_catalogue": float((~test["sku"].isin(set(fit["sku"]))).mean()),
        },
        "select_metric": rc.select_metric,
        "seeds": seeds,
        "chosen": chosen,
        "validation_grid": grid_scores,
        "table": json.loads(table.reset_index().to_json(orient="records")),
        "seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    log.info("recommendation bench finished in %.0f s; results in %s", summary["seconds"], out)
    return {"summary": summary, "table": table}


def _test(name: str, cls: type[Recommender], params: dict, split, seeds: list[int], k: int, frames: list[pd.DataFrame]) -> dict:
    """One table row: `cls(**params)` refitted on train + validation days and scored on the test window,
    once per seed for a stochastic model (mean, and std of the metrics); the first run's lists go to `frames`."""
    runs = []
    run_seeds: list[int | None] = [*seeds] if cls.stochastic else [None]
    for seed in run_seeds:
        scores, lists, secs = _fit_score(
            cls, {**params, **({"seed": seed} if seed is not None else {})}, split.fit, split.test, k
        )
        runs.append({**scores, "wall_s": secs})
        if len(runs) == 1:
            frames.append(_ranking_frame(name, lists))
    table_runs = pd.DataFrame(runs)
    row = {"model": name, **table_runs.mean().to_dict(), "seeds": len(runs)}
    if len(runs) > 1:
        row.update({f"{c}_std": v for c, v in table_runs.std(ddof=1).items() if "/" in c})
    log.info("%s: test ndcg@10/all %.4f", name, row["ndcg@10/all"])
    return row


def _tune(cfg: Config, frame: pd.DataFrame, data_md5: str) -> tuple[dict, list[dict]]:
    """The served recipe's hyperparameters from its Optuna study (the pipeline's search: fitted on train
    days, NDCG@10 on validation days), in its own study; and its trials."""
    import mlflow

    from supplyml import tracking
    from supplyml import tune as tuning

    tracking.setup_tracking(cfg)
    with mlflow.start_run(run_name="bench-recommend", tags={"supplyml.kind": "bench"}):
        study = tuning.tune(RecommendSearch(frame, cfg, f"{data_md5}|bench"), cfg, {"supplyml.kind": "bench"})
    trials = [
        {"params": t.user_attrs["model"], cfg.recommend.select_metric: t.value, "seconds": t.duration.total_seconds()}
        for t in study.trials
        if t.value is not None and t.duration is not None
    ]
    return {"params": {**served_params(cfg), **tuning.best_model(study)}}, trials


def _lookup(name: str) -> type[Recommender]:
    try:
        return recommender(name)
    except ValueError as e:
        raise ValueError(f"recommend.models: {e} (a model outside supplyml.recommending must be imported first)") from None


def _ranking_frame(name: str, lists: dict[str, list[tuple[str, float]]]) -> pd.DataFrame:
    customers = list(lists)
    n = [len(lists[c]) for c in customers]
    return pd.DataFrame(
        {
            "model": name,
            "customer_id": np.repeat(customers, n),
            "rank": np.concatenate([np.arange(1, m + 1) for m in n]) if n else np.array([], int),
            "sku": [s for c in customers for s, _ in lists[c]],
            "score": np.array([v for c in customers for _, v in lists[c]], dtype=np.float32),
        }
    )


def format_table(table: pd.DataFrame) -> str:
    """Metrics as rows of all / repeat / new per model, then customers scored and wall seconds."""
    lines = []
    for subset in metrics.SUBSETS:
        part = table[[f"{m}/{subset}" for m in metrics.METRICS]].copy()
        part.columns = list(metrics.METRICS)
        part["customers"] = table[f"customers/{subset}"].astype(int)
        if subset == "all":
            part["wall_s"] = table["wall_s"]
            stds = [c for c in table if c.endswith("/all_std") and c.startswith("ndcg@10")]
            if stds:
                part["ndcg@10 std"] = table[stds[0]]
        lines += [f"-- {subset} items", part.to_string(float_format=lambda v: f"{v:.4f}", na_rep="")]
    return "\n".join(lines)


def render(cfg: Config, result: dict, out: str) -> str:
    """What `supplyml bench --family recommend` prints."""
    s = result["summary"]
    return "\n".join(
        [
            f"\nRecommendations on the test window {s['split']['test_start']} .. {s['split']['end']} "
            f"(hyperparameters chosen on validation days; stochastic models averaged over seeds {s['seeds']}):",
            format_table(result["table"]),
            f"\nWrote {out}/results.json and rankings.parquet (model, customer_id, rank, sku, score)",
        ]
    )
