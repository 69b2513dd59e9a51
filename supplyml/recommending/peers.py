"""Baselines the product's recommender must beat; each is a `Recommender` (supplyml.recommending.base)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from supplyml.recommending.base import Recommender


class Popularity(Recommender):
    """The same list for everyone: distinct buyers in the last `popularity_days` (base.Recommender._popularity)."""

    name = "popularity"

    def _fit(self, X, frame):
        pass

    def _score(self, rows):
        return np.broadcast_to(self.popularity, (len(rows), len(self.items)))


class PersonalFrequency(Recommender):
    """The customer's own items first, by how many days they bought each; ties and the rest of the list
    by popularity. Popularity is scaled below 1, so it never outranks one more purchase day."""

    name = "repeat"

    def _fit(self, X, frame):
        pass

    def _score(self, rows):
        pop = self.popularity / (self.popularity.max() + 1.0)
        return self.X[rows].toarray() + pop


class ItemKNN(Recommender):
    """Cosine item-item similarity over who bought what (binary), each item's `neighbours` most similar
    kept; a customer's score for an item is the sum of its similarities to the items they bought."""

    name = "item_knn"
    defaults = {"neighbours": 100}

    def _fit(self, X, frame):
        B = (X > 0).astype(np.float32)
        norms = np.sqrt(np.asarray(B.sum(0)).ravel())
        norms[norms == 0] = 1.0
        S = (B.T @ B).toarray() / norms[:, None] / norms[None, :]
        np.fill_diagonal(S, 0.0)
        n = int(self.params["neighbours"])
        if n < S.shape[1]:  # keep each item's n nearest as the neighbours it lends its score to
            cut = np.argpartition(-S, n, axis=1)[:, n:]
            np.put_along_axis(S, cut, 0.0, axis=1)
        self.S = S.astype(np.float32)

    def _score(self, rows):
        return (self.X[rows] > 0).astype(np.float32) @ self.S

    def _save_state(self, path: Path) -> dict:
        np.save(path / "similarity.npy", self.S)
        return {}

    def _load_state(self, path: Path, meta: dict) -> None:
        self.S = np.load(path / "similarity.npy")


def ease_weights(X: np.ndarray | sp.spmatrix, l2: float) -> np.ndarray:
    """EASE^R (Steck 2019): B = I - P diag(1/diag(P)), P = (X'X + l2 I)^-1, so diag(B) = 0."""
    G = X.T @ X
    G = (G.toarray() if sp.issparse(G) else np.asarray(G)).astype(np.float64)
    G[np.diag_indices_from(G)] += l2
    P = np.linalg.inv(G)  # dense 3,600 x 3,600: a few seconds on 2 cores
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


class EASE(Recommender):
    """EASE^R on the binary customer x item matrix; `l2` is chosen on the validation window."""

    name = "ease"
    defaults = {"l2": 500.0}

    def _fit(self, X, frame):
        self.B = ease_weights((X > 0).astype(np.float64), float(self.params["l2"])).astype(np.float32)

    def _score(self, rows):
        return (self.X[rows] > 0).astype(np.float32) @ self.B

    def _save_state(self, path: Path) -> dict:
        np.save(path / "ease.npy", self.B)
        return {}

    def _load_state(self, path: Path, meta: dict) -> None:
        self.B = np.load(path / "ease.npy")


class _Factors(Recommender):
    """Matrix factorisation from `implicit` (CPU): score = user factors . item factors."""

    stochastic = True

    def _model(self):
        raise NotImplementedError

    def _fit(self, X, frame):
        import implicit.cpu.als  # noqa: F401  loads the BLAS it uses before the limit below is set
        from threadpoolctl import threadpool_limits  # a dependency of implicit's

        # implicit runs its own threads: BLAS threads on top oversubscribe the cores (it warns when built).
        with threadpool_limits(1, "blas"):
            model = self._model()
            model.fit(self._confidence(X), show_progress=False)
        self.U = _numpy(model.user_factors)
        self.V = _numpy(model.item_factors)

    def _confidence(self, X):
        return X

    def _score(self, rows):
        return self.U[rows] @ self.V.T

    def _save_state(self, path: Path) -> dict:
        np.savez(path / "factors.npz", U=self.U, V=self.V)
        return {}

    def _load_state(self, path: Path, meta: dict) -> None:
        with np.load(path / "factors.npz") as f:
            self.U, self.V = f["U"], f["V"]


def _numpy(a) -> np.ndarray:
    a = a.to_numpy() if hasattr(a, "to_numpy") else a  # implicit's GPU arrays
    return np.asarray(a, dtype=np.float32)


class ALS(_Factors):
    """Implicit ALS (Hu, Koren & Volinsky 2008); confidence alpha x log(1 + purchase days)."""

    name = "als"
    defaults = {"factors": 64, "regularization": 0.01, "alpha": 1.0, "iterations": 15, "seed": 0, "num_threads": 1}

    def _model(self):
        from implicit.cpu.als import AlternatingLeastSquares

        p = self.params
        return AlternatingLeastSquares(
            factors=int(p["factors"]),
            regularization=float(p["regularization"]),
            alpha=float(p["alpha"]),
            iterations=int(p["iterations"]),
            random_state=int(p["seed"]),
            num_threads=int(p["num_threads"]),
        )

    def _confidence(self, X):
        return X.log1p().astype(np.float32)  # a weekly buyer is not 50 times as sure as a one-off


class BPR(_Factors):
    """Bayesian personalised ranking (Rendle et al. 2009) on the binary matrix."""

    name = "bpr"
    defaults = {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100, "seed": 0, "num_threads": 1}

    def _model(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        p = self.params
        return BayesianPersonalizedRanking(
            factors=int(p["factors"]),
            learning_rate=float(p["learning_rate"]),
            regularization=float(p["regularization"]),
            iterations=int(p["iterations"]),
            random_state=int(p["seed"]),
            num_threads=int(p["num_threads"]),
        )

    def _confidence(self, X):
        return (X > 0).astype(np.float32)


PEERS: dict[str, type[Recommender]] = {m.name: m for m in (Popularity, PersonalFrequency, ItemKNN, EASE, ALS, BPR)}
