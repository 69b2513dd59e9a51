"""How far one recommendation list can serve new items and habits at once: DeepFM's calibrated list
(supplyml.recommending.modules.DeepFM) with the new products' log-odds raised by a boost b, scored on the
validation days (fitted on the days before them) and on the test window (fitted on everything before
it), per seed. Nothing is chosen here: every boost is reported on both windows.

    .venv/bin/python benchmarks/recommend_tradeoff.py [--seeds 0 1 2] [--boosts 0 1 1.5 2 2.5 3 4] [--out PATH]

The bars on each window: popularity on new items, and the best peer (personal frequency) on all items.
The cause of the trade-off is measured too, at b = 0: how often the product a list ranks at each place
was bought in the window, for habits (products the customer bought before) and for new products.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supplyml.config import Config  # noqa: E402
from supplyml.recommending.base import recommender  # noqa: E402
from supplyml.recommending.interactions import catalogue, load_interactions, purchased_items, split  # noqa: E402
from supplyml.recommending.scoring import score_window  # noqa: E402
from supplyml.recommending.search import served_params  # noqa: E402

COLUMNS = ("ndcg@10/all", "ndcg@10/new", "ndcg@10/repeat")


def _hit_rates(lists: dict, history: dict, window: dict) -> dict[str, list[float]]:
    """Per place 1..10: the share of lists whose product there was bought in the window, for habits and new."""
    hits: dict[str, list[list[int]]] = {"habit": [[] for _ in range(10)], "new": [[] for _ in range(10)]}
    for customer, ranked in lists.items():
        for place, (sku, _) in enumerate(ranked[:10]):
            kind = "habit" if sku in history.get(customer, ()) else "new"
            hits[kind][place].append(sku in window.get(customer, ()))
    return {kind: [float(np.mean(h)) if h else float("nan") for h in per] for kind, per in hits.items()}


def run(cfg: Config, seeds: list[int], boosts: list[float]) -> dict:
    data = load_interactions(cfg, str(ROOT))
    s = split(cfg, data.frame)
    params = {**served_params(cfg), **cfg.recommend.ablations["deepfm"]}
    windows = {"validation": (s.train, s.val), "test": (s.fit, s.test)}
    rows, causes, peers = [], {}, {}
    for name, (history, window) in windows.items():
        for peer in ("popularity", "repeat"):
            model = recommender(peer)(popularity_days=cfg.recommend.popularity_days).fit(history, catalogue(history))
            scores = score_window(model, history, window, cfg.recommend.k)[0]
            peers[f"{name}/{peer}"] = {c: scores[c] for c in COLUMNS}
        bought, relevant = purchased_items(history), purchased_items(window)
        for seed in seeds:
            t0 = time.perf_counter()
            model = recommender("network")(**{**params, "seed": seed}).fit(history, catalogue(history))
            fit_s = time.perf_counter() - t0
            for boost in boosts:
                # The boost only shifts scores (DeepFM.scores): one fit serves every boost.
                model.module.hparams["new_item_boost"] = boost
                scores, lists = score_window(model, history, window, cfg.recommend.k)
                rows.append({"window": name, "seed": seed, "boost": boost, "fit_s": fit_s, **{c: scores[c] for c in COLUMNS}})
                if boost == 0 and seed == seeds[0]:
                    causes[name] = _hit_rates(lists, bought, relevant)
    return {"rows": rows, "peers": peers, "hit_rate_by_place": causes, "split": s.dates(), "recipe": params}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--boosts", type=float, nargs="+", default=[0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "recommend" / "tradeoff.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = run(Config(), args.seeds, args.boosts)
    table = pd.DataFrame(result["rows"]).groupby(["window", "boost"])[list(COLUMNS)].agg(["mean", "std"])
    print("DeepFM's list, new products' log-odds + boost (mean and std over seeds", args.seeds, ")")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    for key, scores in result["peers"].items():
        print(f"{key:22s}", "  ".join(f"{c} {v:.4f}" for c, v in scores.items()))
    for window, rates in result["hit_rate_by_place"].items():
        for kind, per in rates.items():
            print(f"{window} {kind:5s} hit rate by place 1..10:", " ".join(f"{v:.3f}" for v in per))
    result["seconds"] = time.perf_counter() - started
    result["machine"] = {"platform": platform.platform(), "python": platform.python_version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
