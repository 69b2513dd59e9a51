"""The family's Recommenders over the Lightning architectures of `supplyml.recommending.modules`
(`bpr`, `sequence`, `deepfm`): `Network` maps customer and item ids to indices, and `Blend` puts the customer's
most-bought items first. Torch is imported where a network is fitted or restored, not with this module:
the steps that only read a recipe's defaults (tune-study, tune-best) start without it.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from supplyml.recommending.base import Recommender


class Network(Recommender):
    """The product's recommender: one of `modules.ARCHITECTURES` trained with Lightning on the fitting data's
    purchase days (pairs for `bpr`, each customer's day-ordered items for `sequence`, and for `deepfm` its
    fields over the last `windows` windows of `horizon` days with `negatives` random products per customer)."""

    name = "network"
    stochastic = True
    defaults = {
        "architecture": "sequence",
        "dim": 64,
        "lr": 1e-3,
        "epochs": 8,
        "max_len": 30,
        "batch_size": 128,
        "seed": 0,
        "accelerator": "auto",
        "horizon": 28,
        "windows": 3,
        "negatives": 20,
    }

    def _fit(self, X, frame):
        days = frame.drop_duplicates(["row", "col", "ds"]).sort_values(["row", "ds", "col"])
        pairs = days[["row", "col"]].to_numpy()
        starts = np.searchsorted(pairs[:, 0], np.arange(len(self.customers) + 1))
        sequences = [pairs[a:b, 1] for a, b in zip(starts[:-1], starts[1:])]
        from supplyml.recommending import fields
        from supplyml.recommending.modules import ARCHITECTURES, Purchases, fit

        p = self.params
        cls = ARCHITECTURES[p["architecture"]]
        accepted = inspect.signature(cls).parameters  # each takes its own
        hparams = {k: v for k, v in p.items() if k in accepted and k not in ("n_users", "n_items")}
        self.data = Purchases(pairs, sequences)
        if cls.uses_fields:
            codes, labels, self.data.fields = fields.examples(
                frame,
                X.shape,
                int(p["horizon"]),
                int(p["windows"]),
                int(p["negatives"]),
                int(p["popularity_days"]),
                int(p["seed"]),
            )
            self.data.examples = (codes, labels)
            hparams["field_sizes"] = self.data.fields.sizes
            # Never-bought products were drawn `negatives` times per customer, each kept at this rate (DeepFM.scores).
            hparams["never_offset"] = float(np.log(fields.sampling_rate(int(p["negatives"]), len(self.items))))
        self.module = fit(
            p["architecture"],
            self.data,
            len(self.customers),
            len(self.items),
            hparams,
            p["epochs"],
            p["batch_size"],
            p["seed"],
            p["accelerator"],
        )
        self.data.examples = None  # training only: not kept with the model

    def _score(self, rows):
        return self.module.scores(rows, self.data)

    def _save_state(self, path: Path) -> dict:
        import torch

        torch.save(self.module.state_dict(), path / "network.pt")
        np.savez(path / "sequences.npz", *self.data.sequences)
        if self.data.fields is not None:
            self.data.fields.save(path)
        return {"hparams": dict(self.module.hparams)}

    def _load_state(self, path: Path, meta: dict) -> None:
        import torch

        from supplyml.recommending.fields import Fields
        from supplyml.recommending.modules import ARCHITECTURES, Purchases

        cls = ARCHITECTURES[self.params["architecture"]]
        self.module = cls(**meta["hparams"])
        self.module.load_state_dict(torch.load(path / "network.pt"))
        self.module.eval()
        with np.load(path / "sequences.npz") as f:
            sequences = [f[f"arr_{i}"] for i in range(len(f.files))]
        self.data = Purchases(np.empty((0, 2), np.int64), sequences, Fields.load(path) if cls.uses_fields else None)


class Blend(Network):
    """Personal frequency ranks the customer's own items in the first `repeat_slots` places (the repeat
    peer is hard to beat there, Li et al. 2023), counting purchase days with weight 0.5 ** (age /
    `half_life_days`) (0: unweighted, the repeat peer's order), so recent habits count more; everything
    after is ranked by the network's score plus `popularity_weight` x recent popularity (both
    standardised per customer), where popularity mixes the global one with that of the customer's RFM
    segment by `segment_weight`. All four are chosen on validation days (supplyml.recommending.search)."""

    name = "blend"
    defaults = {**Network.defaults, "repeat_slots": 5, "half_life_days": 0, "popularity_weight": 0.0, "segment_weight": 0.0}

    def _fit(self, X, frame):
        super()._fit(X, frame)
        self._fit_segments(frame)
        days = frame.drop_duplicates(["row", "col", "ds"])
        half_life = float(self.params["half_life_days"])
        age = (self.cutoff - days["ds"]).dt.days.to_numpy()
        weight = 0.5 ** (age / half_life) if half_life > 0 else np.ones(len(days))
        self.habits = sp.csr_matrix((weight.astype(np.float32), (days["row"], days["col"])), shape=X.shape)
        self.habits.sum_duplicates()

    def _score(self, rows):
        learned = _standardise(super()._score(rows))
        weight = float(self.params["popularity_weight"])
        if weight:
            learned = learned + weight * _standardise(np.log1p(self._popularity_of(rows)))
        learned = learned - learned.min(1, keepdims=True)
        learned /= learned.max(1, keepdims=True) + 1e-9  # in [0, 1]
        slots = min(int(self.params["repeat_slots"]), learned.shape[1])
        if slots == 0:  # the network's ranking alone
            return learned
        habits = self.habits[rows].toarray()
        # Each customer's `repeat_slots` strongest habits on top, with popularity scaled below 1 added as
        # the repeat peer adds it. Unweighted it only breaks ties between whole purchase-day counts; with a
        # half-life it also lifts a popular item above a slightly stronger habit, which validation preferred
        # (NDCG@10 0.3253 vs 0.3130 at 120 days, popularity weight 1) over ordering by habit alone.
        key = (habits + self.popularity / (self.popularity.max() + 1.0)) * (habits > 0)
        cut = -np.sort(-key, 1)[:, slots - 1 :][:, :1]
        top = (habits > 0) & (key >= cut)
        return np.where(top, 2.0 + key, learned)

    def _fit_segments(self, frame) -> None:
        """With `segment_weight` > 0: the customers' k-means RFM segments (supplyml.segments, k by silhouette)
        and each segment's recent popularity (distinct buyers in the last `popularity_days`)."""
        self.segment_of = np.zeros(len(self.customers), dtype=np.int64)
        self.segment_popularity = np.zeros((1, len(self.items)), dtype=np.float32)
        if not float(self.params["segment_weight"]):
            return
        from supplyml import segments
        from supplyml.config import Config

        seg = segments.purchase_segments(frame, Config(seed=int(self.params["seed"])), self.cutoff + pd.Timedelta(days=1))
        self.segment_of = seg.labels.reindex(self.customers).to_numpy().astype(np.int64)
        start = self.cutoff - pd.Timedelta(days=int(self.params["popularity_days"]) - 1)
        recent = frame[frame["ds"] >= start].drop_duplicates(["row", "col"])
        counts = np.zeros((seg.k, len(self.items)), dtype=np.float32)
        np.add.at(counts, (self.segment_of[recent["row"].to_numpy()], recent["col"].to_numpy()), 1.0)
        self.segment_popularity = counts

    def _popularity_of(self, rows) -> np.ndarray:
        """Recent popularity per customer row: the global one, mixed with the customer's segment's by
        `segment_weight` (each scaled to a maximum of 1)."""
        overall = self.popularity / self.popularity.max()
        alpha = float(self.params["segment_weight"])
        if not alpha:
            return np.broadcast_to(overall, (len(rows), len(self.items)))
        own = self.segment_popularity[self.segment_of[rows]]
        return (1 - alpha) * overall + alpha * own / np.maximum(own.max(1, keepdims=True), 1.0)

    def _save_state(self, path: Path) -> dict:
        sp.save_npz(path / "habits.npz", self.habits)
        np.savez(path / "segments.npz", segment_of=self.segment_of, segment_popularity=self.segment_popularity)
        return super()._save_state(path)

    def _load_state(self, path: Path, meta: dict) -> None:
        super()._load_state(path, meta)
        self.habits = sp.load_npz(path / "habits.npz").tocsr()
        with np.load(path / "segments.npz") as f:
            self.segment_of, self.segment_popularity = f["segment_of"], f["segment_popularity"]


def _standardise(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean(1, keepdims=True)) / (scores.std(1, keepdims=True) + 1e-9)
