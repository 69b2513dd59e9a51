"""A small fit / sample / predict surface over the DeepAR network, its history and its scaling."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch

from supplyml.config import ModelConfig
from supplyml.metrics import quantile_col
from supplyml.model import DeepAR, negative_binomial
from supplyml.windows import PanelArrays, WindowDataModule, windows

log = logging.getLogger(__name__)


class UnknownSeriesError(KeyError):
    def __init__(self, missing: list[str]):
        super().__init__(missing)
        self.missing = missing

    def __str__(self) -> str:
        return f"unknown series: {', '.join(self.missing[:10])}"


def make_trainer(max_epochs: int, accelerator: str = "auto", callbacks=(), logger=False, **kw) -> pl.Trainer:
    return pl.Trainer(max_epochs=max_epochs, accelerator=accelerator, devices=1, logger=logger,
                      callbacks=list(callbacks), enable_checkpointing=False, enable_model_summary=False,
                      gradient_clip_val=1.0, **kw)


class Forecaster:
    """Probabilistic global forecaster for every series in its history.

    The weights are learnt once; the history is only what forecasts condition on, so the same
    weights forecast from the end of training data (backtests) or of all data (serving).
    """

    def __init__(self, module: DeepAR, history: pd.DataFrame, horizon: int):
        self.module = module.eval()
        self.horizon = horizon  # the horizon the network was trained for
        self.set_history(history)

    def set_history(self, history: pd.DataFrame) -> None:
        self.arrays = PanelArrays.from_panel(history[["unique_id", "ds", "y", "price"]])
        self.row = {uid: i for i, uid in enumerate(self.arrays.ids)}

    @property
    def skus(self) -> list[str]:
        return self.arrays.ids

    @property
    def last_date(self) -> pd.Timestamp:
        return self.arrays.dates[-1]

    @classmethod
    def fit(cls, panel: pd.DataFrame, params: ModelConfig, horizon: int, val_days: int = 0,
            callbacks=(), logger=False, seed: int = 0) -> tuple["Forecaster", pl.Trainer]:
        """Train on `panel`; with val_days > 0 its last days are held out and scored as val_loss."""
        pl.seed_everything(seed, workers=True, verbose=False)
        arrays = PanelArrays.from_panel(panel)
        train_end = len(arrays.dates) - val_days
        data = WindowDataModule(arrays, params.context_length, horizon, train_end, params.batch_size,
                                params.windows_per_series, validate=val_days > 0, seed=seed)
        module = DeepAR(params.hidden_size, params.num_layers, params.dropout, params.learning_rate,
                        params.context_length)
        trainer = make_trainer(params.max_epochs, params.accelerator, callbacks, logger,
                               limit_val_batches=1.0 if val_days else 0)
        trainer.fit(module, datamodule=data)
        return cls(module.cpu(), panel, horizon), trainer

    def _rows(self, skus: list[str]) -> np.ndarray:
        missing = [s for s in skus if s not in self.row]
        if missing:
            raise UnknownSeriesError(missing)
        return np.array([self.row[s] for s in skus], dtype=int)

    @torch.no_grad()
    def sample(self, skus: list[str], horizon: int, n_samples: int, seed: int = 0) -> np.ndarray:
        """Joint sample paths of daily demand, shape (len(skus), n_samples, horizon), by ancestral sampling."""
        a, context = self.arrays, self.module.hparams.context_length
        rows, end = self._rows(skus), len(a.dates)
        w = windows(a, rows, np.full(len(rows), end), context, context)
        x, scale = torch.from_numpy(w["x"]), torch.from_numpy(w["scale"])
        # Prices ahead are unknown: hold the last one, relative to the context's average.
        price = torch.from_numpy(np.log(a.price[rows, end - 1:end] / w["price_ref"])).repeat_interleave(n_samples, dim=0)
        _, _, (h, c) = self.module(x, scale)
        n, s = len(rows), n_samples
        h, c = h.repeat_interleave(s, dim=1), c.repeat_interleave(s, dim=1)
        scale = scale.repeat_interleave(s, dim=0)
        last_y = torch.from_numpy(a.y[rows, end - 1]).repeat_interleave(s)[:, None]
        cal = torch.from_numpy(a.calendar(end, horizon))
        paths = torch.empty(n * s, horizon)
        with torch.random.fork_rng():  # a seed gives the same paths without touching global RNG state
            torch.manual_seed(seed)
            for t in range(horizon):
                step = torch.cat([torch.log1p(last_y / scale), cal[t].expand(n * s, -1), price, torch.log(scale)], 1)
                mu, alpha, (h, c) = self.module(step[:, None, :], scale, (h, c))
                last_y = negative_binomial(mu[:, 0], alpha[:, 0]).sample()[:, None]
                paths[:, t] = last_y[:, 0]
        return paths.reshape(n, s, horizon).numpy()

    def predict(self, skus: list[str] | None, horizon: int, quantiles: list[float], n_samples: int = 200,
                seed: int = 0) -> pd.DataFrame:
        """Mean and quantiles per series and day: non-negative, and non-crossing by construction."""
        skus = list(self.skus if skus is None else skus)
        paths = self.sample(skus, horizon, n_samples, seed)
        out = {"unique_id": np.repeat(skus, horizon),
               "ds": np.tile(pd.date_range(self.last_date + pd.Timedelta(days=1), periods=horizon), len(skus)),
               "mean": paths.mean(axis=1).ravel()}
        qs = np.quantile(paths, sorted(quantiles), axis=1)  # (Q, n, horizon), sorted along Q
        for q, values in zip(sorted(quantiles), qs):
            out[quantile_col(q)] = values.ravel()
        return pd.DataFrame(out)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.module.state_dict(), path / "weights.pt")
        (path / "params.json").write_text(json.dumps({"hparams": dict(self.module.hparams), "horizon": self.horizon}))
        context = self.module.hparams.context_length
        history = self.history_frame()
        history[history["ds"] > self.last_date - pd.Timedelta(days=context + 1)].to_parquet(path / "history.parquet")

    def history_frame(self) -> pd.DataFrame:
        a = self.arrays
        frame = pd.DataFrame({"unique_id": np.repeat(a.ids, len(a.dates)), "ds": np.tile(a.dates, len(a.ids)),
                              "y": a.y.ravel(), "price": a.price.ravel(), "observed": a.observed.ravel()})
        return frame[frame.pop("observed")]

    @classmethod
    def load(cls, path: str | Path) -> "Forecaster":
        path = Path(path)
        meta = json.loads((path / "params.json").read_text())
        module = DeepAR(**meta["hparams"])
        module.load_state_dict(torch.load(path / "weights.pt", map_location="cpu"))
        history = pd.read_parquet(path / "history.parquet")
        return cls(module, history, meta["horizon"])
