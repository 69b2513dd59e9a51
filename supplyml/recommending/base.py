"""The recommendation family's protocol: what the lifecycle asks of any recommender.

A model subclasses `Recommender`, sets `name` (which also registers it for `load`) and implements:
- `_fit(self, X, frame)`: learn from `X`, the customer x item matrix of the fitting data (scipy CSR,
  float32, rows `self.customers`, columns `self.items`, value = the number of days the customer bought
  the item), and `frame`, the same interactions as rows (`interactions.FRAME_COLUMNS`
  plus integer `row` and `col` into X), for models that want order, time or quantities. A model that
  early-stops holds out the last days of `frame` itself (`interactions.temporal_split`).
  Hyperparameters are in `self.params` (JSON-able; `seed` and `num_threads` where it uses them; set
  `stochastic = True` when the fit depends on the seed, and list tunable keys in `defaults`).
- `_score(self, rows)`: scores (len(rows), len(self.items)), higher is better, for known customers'
  row indices into X. Any scale; the base class ranks them.
- `_save_state(self, path) -> dict` writes fitted state under the directory `path` and returns
  JSON-able facts; `_load_state(self, path, meta)` restores it on a fresh `cls(**params)` whose base
  state (items, customers, X, popularity, cutoff) is already in place.
From these the base class gives every model `fit`, `score` (unknown customers get the popularity
scores), `recommend` (top-k lists that say which customers fell back to popularity), `save` and `load`.
The constructor must accept exactly the saved `params` as keyword arguments.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from supplyml.config import RecommendConfig

RECOMMENDERS: dict[str, type[Recommender]] = {}
# The family's modules that define recommenders, imported on first need: the networks import torch and
# Lightning (seconds), which a step that only reads purchases or ranks with a peer should not pay for.
MODEL_MODULES = ("peers", "networks")
FALLBACK = "popularity"
_CHUNK = 2048  # customers scored at once: bounds the dense (customers x items) block


class Recommendations(list):
    """One list of (sku, score) per requested customer, best first; `fallback[i]` is None for a
    personalised list and "popularity" for a customer the model never saw."""

    def __init__(self, lists, fallback) -> None:
        super().__init__(lists)
        self.fallback: list[str | None] = list(fallback)


class Recommender(ABC):
    """A model that ranks the catalogue for customers it was fitted on (see the module docstring)."""

    name: ClassVar[str]
    stochastic: ClassVar[bool] = False  # its fit depends on params["seed"]: the bench runs it per seed
    defaults: ClassVar[dict] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "name" in cls.__dict__:
            other = RECOMMENDERS.get(cls.name)
            # `load` finds a model by its name: two models under one name would load as each other.
            if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
                raise TypeError(f"recommender name {cls.name!r} is taken by {other.__module__}.{other.__qualname__}")
            RECOMMENDERS[cls.name] = cls

    def __init__(self, **params) -> None:
        self.params = {"popularity_days": RecommendConfig().popularity_days, **self.defaults, **params}
        self.descriptions: dict[str, str] = {}  # SKU -> product description, for answers; saved with the model

    # -- what a model implements -----------------------------------------------------------------
    @abstractmethod
    def _fit(self, X: sp.csr_matrix, frame: pd.DataFrame) -> None: ...

    @abstractmethod
    def _score(self, rows: np.ndarray) -> np.ndarray: ...

    def _save_state(self, path: Path) -> dict:
        """Write fitted state under `path`; JSON-able facts returned come back to `_load_state`."""
        return {}

    def _load_state(self, path: Path, meta: dict) -> None:
        """Restore what `_save_state` wrote (a model with no state of its own has nothing to do)."""
        return None

    # -- shared surface --------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, catalogue: Sequence[str], **params) -> Recommender:
        """Fit on interactions `frame`; `catalogue` is what it may recommend, in a fixed order (its
        columns). Interactions outside the catalogue are ignored. `params` update the constructor's."""
        self.params.update(params)
        self.__dict__.pop("_bought", None)  # similar()'s cache of the previous fit
        self.items = list(catalogue)
        self._item_index = {s: j for j, s in enumerate(self.items)}
        frame = frame[frame["sku"].isin(self._item_index)]
        self.customers = sorted(pd.unique(frame["customer_id"]).tolist())
        self._customer_index = {c: i for i, c in enumerate(self.customers)}
        frame = frame.assign(
            row=frame["customer_id"].map(self._customer_index).to_numpy(), col=frame["sku"].map(self._item_index).to_numpy()
        )
        self.X = sp.csr_matrix(
            (np.ones(len(frame), np.float32), (frame["row"], frame["col"])), shape=(len(self.customers), len(self.items))
        )
        self.X.sum_duplicates()
        self.cutoff = pd.Timestamp(frame["ds"].max())
        self.popularity = self._popularity(frame)
        self._fit(self.X, frame)
        return self

    def _popularity(self, frame: pd.DataFrame) -> np.ndarray:
        """Distinct customers per item in the last `popularity_days` before the cutoff; ties (and items
        not bought then) ordered by distinct customers over all the fitting data, always below one."""
        start = self.cutoff - pd.Timedelta(days=int(self.params["popularity_days"]) - 1)
        recent = frame[frame["ds"] >= start].drop_duplicates(["row", "col"])
        counts = np.bincount(recent["col"], minlength=len(self.items)).astype(float)
        ever = np.asarray((self.X > 0).sum(0)).ravel().astype(float)
        return (counts + ever / (ever.max() + 1.0)).astype(np.float32)

    def known(self, customers: Sequence[str]) -> np.ndarray:
        return np.array([c in self._customer_index for c in customers], dtype=bool)

    def score(self, customers: Sequence[str]) -> np.ndarray:
        """(len(customers), len(items)) float32, higher is better; popularity for unknown customers."""
        out = np.empty((len(customers), len(self.items)), dtype=np.float32)
        rows = np.array([self._customer_index.get(c, -1) for c in customers], dtype=np.int64)
        out[rows < 0] = self.popularity
        known = np.flatnonzero(rows >= 0)
        for start in range(0, len(known), _CHUNK):
            idx = known[start : start + _CHUNK]
            out[idx] = self._score(rows[idx])
        return out

    def recommend(
        self, customers: Sequence[str], k: int, exclude_purchased: bool = False, exclude: set[str] | None = None
    ) -> Recommendations:
        """Top-k (sku, score) per customer. `exclude_purchased` drops what each known customer bought in
        the fitting data; `exclude` drops SKUs for everyone. Ties keep catalogue order."""
        customers = list(customers)
        lists = []
        blocked = np.array([s in exclude for s in self.items]) if exclude else None
        for start in range(0, len(customers), _CHUNK):
            chunk = customers[start : start + _CHUNK]
            scores = self.score(chunk).astype(np.float64)
            if blocked is not None:
                scores[:, blocked] = -np.inf
            if exclude_purchased:
                rows = np.array([self._customer_index.get(c, -1) for c in chunk])
                mask = self.X[np.maximum(rows, 0)].toarray() > 0
                mask[rows < 0] = False
                scores[mask] = -np.inf
            order = top_k(scores, k)
            top = np.take_along_axis(scores, order, 1)
            for o, s in zip(order, top):
                ok = np.isfinite(s)
                lists.append([(self.items[j], float(v)) for j, v in zip(o[ok], s[ok])])
        fallback = [None if known else FALLBACK for known in self.known(customers)]
        return Recommendations(lists, fallback)

    def similar(self, sku: str, k: int) -> list[tuple[str, float]]:
        """The k SKUs most often bought by the same customers as `sku` (cosine over who bought what, in the
        fitting data), best first; a KeyError for a SKU outside the catalogue."""
        j = self._item_index[sku]
        if not hasattr(self, "_bought"):
            self._bought = (self.X > 0).astype(np.float32).tocsc()
            self._norms = np.sqrt(np.asarray(self._bought.sum(0)).ravel())
        column = self._bought[:, j]
        overlap = np.asarray((self._bought.T @ column).todense()).ravel()
        cosine = overlap / np.maximum(self._norms * self._norms[j], 1e-12)
        cosine[j] = -np.inf
        order = np.argsort(-cosine, kind="stable")[:k]
        return [(self.items[i], float(cosine[i])) for i in order if cosine[i] > 0]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        sp.save_npz(path / "interactions.npz", self.X)
        np.save(path / "popularity.npy", self.popularity)
        meta = {
            "name": self.name,
            "params": self.params,
            "items": self.items,
            "customers": self.customers,
            "cutoff": str(self.cutoff.date()),
            "descriptions": self.descriptions,
            "state": self._save_state(path),
        }
        (path / "recommender.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        return load(path)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's k best columns, best first, ties in column order: `np.argsort(-scores, axis=1,
    kind="stable")[:, :k]` without sorting whole rows (a catalogue of thousands, a list of ten)."""
    if k >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")
    bars = -np.partition(-scores, k - 1, axis=1)[:, k - 1]  # each row's k-th best score
    out = np.empty((len(scores), k), dtype=np.intp)
    for i, (row, bar) in enumerate(zip(scores, bars)):
        candidates = np.flatnonzero(row >= bar)  # all that tie with the k-th are in, in column order
        if len(candidates) < k:  # NaN scores sort last, below any bar
            candidates = np.arange(len(row))
        out[i] = candidates[np.argsort(-row[candidates], kind="stable")[:k]]
    return out


def recommender(name: str) -> type[Recommender]:
    """The model registered as `name`; the family's MODEL_MODULES are imported until it is found. A
    model defined elsewhere must have been imported first."""
    for module in MODEL_MODULES:
        if name in RECOMMENDERS:
            break
        importlib.import_module(f"supplyml.recommending.{module}")
    if name not in RECOMMENDERS:
        raise ValueError(f"unknown recommender {name!r}; known: {sorted(RECOMMENDERS)}")
    return RECOMMENDERS[name]


def load(path: str | Path) -> Recommender:
    """Any saved recommender, whatever its model."""
    path = Path(path)
    meta = json.loads((path / "recommender.json").read_text())
    try:
        cls = recommender(meta["name"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    model = cls(**meta["params"])
    model.items, model.customers = meta["items"], meta["customers"]
    model._item_index = {s: j for j, s in enumerate(model.items)}
    model._customer_index = {c: i for i, c in enumerate(model.customers)}
    model.X = sp.load_npz(path / "interactions.npz").tocsr()
    model.popularity = np.load(path / "popularity.npy")
    model.cutoff = pd.Timestamp(meta["cutoff"])
    model.descriptions = meta.get("descriptions", {})
    model._load_state(path, meta["state"])
    return model
