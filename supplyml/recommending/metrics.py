"""Ranking metrics over the full catalogue (no sampled negatives), overall and for repeat and new items.

Who is scored: the customers of `relevant` — the caller passes the customers active in the evaluated
window who are known to the model (bought something in its fitting data), each with the set of SKUs
they bought in the window. An SKU that entered the catalogue only in the window stays relevant and
counts as a miss: no model can rank it, and hiding it would flatter every model alike.

Relevance is binary. For one customer with ranked list L (best first) and relevant set R:
- Recall@k = |L[:k] ∩ R| / |R|
- HitRate@k = 1 if L[:k] ∩ R is non-empty, else 0
- NDCG@k = sum over hits at rank i (1-based) of 1/log2(i + 1), divided by the ideal DCG, the same sum
  over ranks 1 .. min(k, |R|)
- MAP@k: AP@k = sum over hits at rank i <= k of precision@i, divided by min(k, |R|); averaged
- Coverage@k: the share of the catalogue (`catalogue_size` SKUs) in the union of the scored customers'
  top-k lists (a property of the lists, not of R)
Each per-customer figure is averaged over the scored customers, with equal weight.

Repeat and new items (Li et al. 2023, "A Next Basket Recommendation Reality Check"): a customer's
repeat items are the relevant SKUs they had bought before the window (`history`), their new items the
rest. Each model's ONE ranked list per customer is judged three times, only the relevant set changes:
- all: every customer, R = all the SKUs they bought in the window;
- repeat: the customers with >= 1 repeat item, R = their repeat items; the ranking is the same full
  list, so a new item in the list takes a rank and counts as a miss;
- new: the customers with >= 1 new item, R = their new items; a repeat item in the list is a miss.
Coverage in the repeat and new columns is over those customers' lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

METRICS = ("recall@10", "recall@20", "ndcg@10", "hit@10", "map@10", "coverage@10")
SUBSETS = ("all", "repeat", "new")


def ranking_metrics(
    rankings: Mapping[str, Sequence[str]], relevant: Mapping[str, set[str]], catalogue_size: int
) -> dict[str, float]:
    """METRICS averaged over the customers of `relevant` with a non-empty set (see the module docstring),
    plus `customers`, how many that is. A customer missing from `rankings` has an empty list."""
    customers, hits, n_rel, ranked = _hits(rankings, relevant)
    if not customers:
        return {**dict.fromkeys(METRICS, float("nan")), "customers": 0}
    out = {
        "recall@10": _recall(hits, n_rel, 10),
        "recall@20": _recall(hits, n_rel, 20),
        "ndcg@10": float(_ndcg_rows(hits, n_rel, 10).mean()),
        "hit@10": float(hits[:, :10].any(1).mean()),
        "map@10": _map(hits, n_rel, 10),
        "coverage@10": _coverage(ranked, 10, catalogue_size),
    }
    return {**out, "customers": len(customers)}


def ndcg_per_customer(rankings: Mapping[str, Sequence[str]], relevant: Mapping[str, set[str]], k: int = 10) -> pd.Series:
    """NDCG@k of each customer of `relevant` with a non-empty set: the paired units of a gate."""
    customers, hits, n_rel, _ = _hits(rankings, relevant)
    return pd.Series(
        _ndcg_rows(hits, n_rel, k) if customers else [], index=pd.Index(customers, dtype=object), dtype=float, name=f"ndcg@{k}"
    )


def _hits(rankings: Mapping[str, Sequence[str]], relevant: Mapping[str, set[str]]):
    """The customers with a non-empty relevant set, their (customers, width) hit matrix, relevant counts and
    ranked SKU codes (-1 past a list's end)."""
    customers = [c for c, items in relevant.items() if items]
    if not customers:
        return customers, None, None, None
    lists = [list(rankings.get(c, ())) for c in customers]
    width = max(20, max(map(len, lists)))
    # One vocabulary for ranked and relevant SKUs; a hit is a (customer, sku) key present in both.
    ranked_skus = np.array([s for lst in lists for s in lst], dtype=object)
    rel_rows = np.repeat(np.arange(len(customers)), [len(relevant[c]) for c in customers])
    rel_skus = np.array([s for c in customers for s in relevant[c]], dtype=object)
    codes, vocab = pd.factorize(np.concatenate([ranked_skus, rel_skus]))
    v = len(vocab)
    ranked = np.full((len(customers), width), -1, dtype=np.int64)
    lengths = np.array([len(lst) for lst in lists])
    ranked[np.arange(width) < lengths[:, None]] = codes[: len(ranked_skus)]
    rel_keys = rel_rows * v + codes[len(ranked_skus) :]
    keys = np.arange(len(customers))[:, None] * v + ranked
    hits = np.isin(keys, rel_keys) & (ranked >= 0)
    n_rel = np.bincount(rel_rows, minlength=len(customers)).astype(float)
    return customers, hits, n_rel, ranked


def _recall(hits: np.ndarray, n_rel: np.ndarray, k: int) -> float:
    return float((hits[:, :k].sum(1) / n_rel).mean())


def _ndcg_rows(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discount).sum(1)
    idcg = np.cumsum(discount)[np.minimum(n_rel, k).astype(int) - 1]
    return dcg / idcg


def _map(hits: np.ndarray, n_rel: np.ndarray, k: int) -> float:
    h = hits[:, :k]
    precision = np.cumsum(h, 1) / np.arange(1, k + 1)
    return float(((precision * h).sum(1) / np.minimum(n_rel, k)).mean())


def _coverage(ranked: np.ndarray, k: int, catalogue_size: int) -> float:
    top = ranked[:, :k]
    return float(len(np.unique(top[top >= 0])) / catalogue_size) if catalogue_size else float("nan")


def split_relevant(relevant: Mapping[str, set[str]], history: Mapping[str, set[str]]) -> dict[str, dict[str, set[str]]]:
    """{"all", "repeat", "new"} -> customer -> relevant SKUs; customers with an empty set left out."""
    out = {"all": {c: set(r) for c, r in relevant.items() if r}, "repeat": {}, "new": {}}
    for c, items in out["all"].items():
        before = history.get(c, set())
        if rep := items & before:
            out["repeat"][c] = rep
        if new := items - before:
            out["new"][c] = new
    return out


def evaluate(
    rankings: Mapping[str, Sequence[str]], relevant: Mapping[str, set[str]], history: Mapping[str, set[str]], catalogue_size: int
) -> dict[str, dict[str, float]]:
    """ranking_metrics for all, repeat and new items of the same rankings (see the module docstring)."""
    return {name: ranking_metrics(rankings, rel, catalogue_size) for name, rel in split_relevant(relevant, history).items()}


def flatten(result: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """{"all": {"ndcg@10": x}} -> {"ndcg@10/all": x}: one table row."""
    return {f"{m}/{subset}": result[subset][m] for m in (*METRICS, "customers") for subset in SUBSETS}
