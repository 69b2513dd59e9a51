"""The network family: Lightning networks (`supplyml.forecasting.modules`) trained on the whole panel at once.

`NetworkForecaster.fit` trains the configured architecture; each architecture's class owns how it
forecasts: `MLP` reads exact negative-binomial marginals and draws blocks of days, `DeepAR` unrolls
ancestral sample paths day by day. The weights are learnt once; the history is only what forecasts
condition on, so the same weights forecast from the end of training data or of all data.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import StochasticWeightAveraging
from scipy.stats import nbinom, norm

from supplyml.config import Architecture, ModelConfig
from supplyml.forecasting.base import TUNED, Anchored, Forecaster, copula_normals, finish, future_flags
from supplyml.forecasting.modules import FUTURE, NETWORKS, DeepARNet, MLPNet, TransformerNet, VAELSTMNet, negative_binomial
from supplyml.forecasting.windows import LAG, PanelArrays, WindowDataModule, future_steps, windows


def make_trainer(max_epochs: int, accelerator: str = "auto", callbacks=(), logger=False, **kw) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        logger=logger,
        callbacks=list(callbacks),
        enable_checkpointing=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        **kw,
    )


class NetworkForecaster(Forecaster):
    """Shared by the architectures: training, history as arrays, save and load of weights."""

    network: type[pl.LightningModule]
    # "network": the tuned architecture and hyperparameters; an architecture's name: that architecture with
    # the `model.*` settings, untuned (to try or force one).
    candidates = (*TUNED, *get_args(Architecture))
    tuned = True

    @classmethod
    def candidate(cls, name, cfg, params):
        if name not in TUNED:
            params = cfg.model.model_copy(update={"architecture": name})
        return lambda panel: NetworkForecaster.fit(panel, params, cfg.features.horizon, seed=cfg.seed)[0]

    def __init__(self, module, history: pd.DataFrame, horizon: int, num_samples: int = 100, seed: int = 0):
        self.module = module.eval()
        self.horizon = horizon  # the horizon the network was trained for
        self.num_samples, self.seed = num_samples, seed
        self.history_days = module.hparams.context_length + 1
        super().__init__(history)

    def _anchor(self, history: pd.DataFrame | Anchored) -> None:
        super()._anchor(history)
        self.arrays = PanelArrays.from_panel(self.history)

    @classmethod
    def fit(
        cls, panel: pd.DataFrame, params: ModelConfig, horizon: int, val_days: int = 0, callbacks=(), logger=False, seed: int = 0
    ) -> tuple[NetworkForecaster, pl.Trainer]:
        """Train `params.architecture` on `panel`; with val_days > 0 its last days are held out and scored
        as val_loss (what tuning reads)."""
        family = ARCHITECTURES[params.architecture]
        if issubclass(family, MLP) and val_days > horizon:
            raise ValueError(f"val_days ({val_days}) must not exceed the horizon ({horizon}) for the {family.kind}")
        pl.seed_everything(seed, workers=True, verbose=False)
        arrays = PanelArrays.from_panel(panel)
        train_end = len(arrays.dates) - val_days
        data = WindowDataModule(
            arrays,
            params.context_length,
            horizon,
            train_end,
            params.batch_size,
            params.windows_per_series,
            validate=val_days > 0,
            seed=seed,
        )
        module = family.network(
            params.hidden_size, params.num_layers, params.dropout, params.learning_rate, params.context_length, horizon
        )
        if params.swa_start < 1:
            callbacks = [*callbacks, StochasticWeightAveraging(swa_lrs=params.learning_rate, swa_epoch_start=params.swa_start)]
        trainer = make_trainer(params.max_epochs, params.accelerator, callbacks, logger, limit_val_batches=1.0 if val_days else 0)
        trainer.fit(module, datamodule=data)
        return family(module.cpu(), panel, horizon, params.num_samples, seed), trainer

    def _save_state(self, path: Path) -> dict:
        torch.save(self.module.state_dict(), path / "weights.pt")
        return {"hparams": dict(self.module.hparams), "horizon": self.horizon, "num_samples": self.num_samples, "seed": self.seed}

    @classmethod
    def _load_state(cls, path: Path, meta: dict, history: pd.DataFrame) -> NetworkForecaster:
        module = cls.network(**meta["hparams"])
        module.load_state_dict(torch.load(path / "weights.pt", map_location="cpu"))
        return cls(module, history, meta["horizon"], meta["num_samples"], meta["seed"])

    def _context(self, a: PanelArrays, rows: np.ndarray) -> dict[str, np.ndarray]:
        context = self.module.hparams.context_length
        return windows(a, rows, np.full(len(rows), len(a.dates)), context, context)

    def _window(self, a: PanelArrays, rows: np.ndarray, steps: int, promo=None, event=None):
        """The context window and the `steps` days after `a` ends (their known covariates, the last day's
        demand as the first one's lag), as tensors: x (len(rows), C + steps, F) and the series' scale."""
        w = self._context(a, rows)
        ahead = future_steps(a, rows, len(a.dates), steps, w, promo, event)
        ahead[:, 0, LAG] = np.log1p(a.y[rows, -1] / w["scale"][:, 0])
        return torch.from_numpy(np.concatenate([w["x"], ahead], 1)), torch.from_numpy(w["scale"])


class PathForecaster(NetworkForecaster):
    """A network whose marginals exist only through its sample paths: quantiles are read from them."""

    def quantiles(self, skus, horizon, levels, future=None):
        paths = self.sample(skus, horizon, self.num_samples, self.seed, future)
        return finish(paths.mean(1), np.moveaxis(np.quantile(paths, levels, axis=1), 0, -1))


class MLP(NetworkForecaster):
    """Direct multi-horizon MLP: exact NB marginals within the trained horizon; longer horizons draw
    blocks, each path's next block conditioned on its own draws."""

    kind = "mlp"
    network = MLPNet

    def _inputs(self, a: PanelArrays, rows: np.ndarray, steps: int, promo=None, event=None):
        """The window for the `steps` days after `a` ends: context features plus forecast days.

        The network reads every forecast day of its horizon at once, so a shorter request still gets
        the whole horizon's calendar (known ahead) and only its first `steps` days are read: padded
        days would change the first ones (an L + R = 10-day forecast read its totals' paths from a
        different, biased distribution than the 28-day forecast its daily calibration was learnt on)."""
        h = self.horizon
        return self._window(a, rows, h, _pad(promo, h), _pad(event, h))

    @torch.no_grad()
    def distribution(self, a: PanelArrays, rows: np.ndarray, steps: int, promo=None, event=None):
        """NB mean and dispersion (len(rows), steps), steps up to the trained horizon."""
        mu, alpha = self.module.distribution(*self._inputs(a, rows, steps, promo, event))
        return mu.numpy()[:, :steps].astype(float), alpha.numpy()[:, :steps].astype(float)

    def quantiles(self, skus, horizon, levels, future=None):
        if horizon > self.horizon:
            paths = self.sample(skus, horizon, self.num_samples, self.seed, future)
            return paths.mean(1), np.moveaxis(np.quantile(paths, levels, axis=1), 0, -1)
        # Flags of the whole trained horizon where the caller knows them: the network reads every day's.
        flags = future_flags(future, skus, self.forecast_dates(self.horizon))
        mu, alpha = self.distribution(self.arrays, self.check_skus(skus), horizon, **flags)
        r = (1.0 / alpha)[..., None]
        return finish(mu, nbinom.ppf(np.asarray(levels), r, r / (r + mu[..., None])))

    def sample(self, skus, horizon, n_samples, seed=0, future=None):
        rows, rng = self.check_skus(skus), np.random.default_rng(seed)
        flags = future_flags(future, skus, self.forecast_dates(max(horizon, self.horizon)))
        a, n, s = self.arrays, len(rows), n_samples
        first = min(horizon, self.horizon)
        mu, alpha = self.distribution(a, rows, first, *(_cut(f, 0, self.horizon) for f in flags.values()))
        paths = self._draw(mu, alpha, s, rng).reshape(n * s, first)
        while paths.shape[1] < horizon:
            done, steps = paths.shape[1], min(self.horizon, horizon - paths.shape[1])
            ext = _extend(a, rows, paths, self.module.hparams.context_length, s, flags["promo"], flags["event"])
            mu, alpha = self.distribution(
                ext, np.arange(n * s), steps, *(_rep(_cut(f, done, self.horizon), s) for f in flags.values())
            )
            paths = np.concatenate([paths, self._draw(mu, alpha, 1, rng)[:, 0]], 1)
        return paths.reshape(n, s, horizon)

    def _draw(self, mu: np.ndarray, alpha: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
        """(n, s, h) draws with exact NB marginals, days tied by the calibrated copula correlation."""
        z = copula_normals(mu.shape[0], s, mu.shape[1], self.calibration.rho, rng)
        r = 1.0 / alpha[:, None, :]
        u = np.clip(norm.cdf(z), 1e-9, 1 - 1e-9)
        return nbinom.ppf(u, r, r / (r + mu[:, None, :])).astype(np.float32)


class DeepAR(PathForecaster):
    """LSTM unrolled day by day, each path feeding its own last draw back in; quantiles from paths."""

    kind = "deepar"
    network = DeepARNet

    @torch.no_grad()
    def sample(self, skus, horizon, n_samples, seed=0, future=None):
        rows = self.check_skus(skus)
        flags = future_flags(future, skus, self.forecast_dates(horizon))
        a, n, s = self.arrays, len(rows), n_samples
        end = len(a.dates)
        with torch.random.fork_rng():  # a seed gives the same paths without touching global RNG state
            torch.manual_seed(seed)
            w = self._context(a, rows)
            x, scale = torch.from_numpy(w["x"]), torch.from_numpy(w["scale"])
            _, _, (h, c) = self.module(x, scale)
            h, c = h.repeat_interleave(s, dim=1), c.repeat_interleave(s, dim=1)
            steps = torch.from_numpy(future_steps(a, rows, end, horizon, w, flags["promo"], flags["event"]))
            steps = steps.repeat_interleave(s, dim=0)
            scale = scale.repeat_interleave(s, dim=0)
            last_y = torch.from_numpy(a.y[rows, end - 1]).repeat_interleave(s)
            paths = torch.empty(n * s, horizon)
            for t in range(horizon):
                step = steps[:, t].clone()
                step[:, LAG] = torch.log1p(last_y / scale[:, 0])
                mu, alpha, (h, c) = self.module(step[:, None, :], scale, (h, c))
                last_y = negative_binomial(mu[:, 0], alpha[:, 0]).sample()
                paths[:, t] = last_y
        return paths.reshape(n, s, horizon).numpy()


class Transformer(MLP):
    """The Transformer encoder: direct multi-horizon like the MLP, so it forecasts, samples and extends
    past its horizon as the MLP does (`modules.TransformerNet`)."""

    kind = "transformer"
    network = TransformerNet


class VAELSTM(PathForecaster):
    """The VAE-LSTM (`modules.VAELSTMNet`): quantiles from paths, each drawing its latent from the
    encoder's posterior of the context and then its days in turn, for any horizon (the decoder reads
    each day's known covariates)."""

    kind = "vae_lstm"
    network = VAELSTMNet

    @torch.no_grad()
    def sample(self, skus, horizon, n_samples, seed=0, future=None):
        rows, n, s = self.check_skus(skus), len(skus), n_samples
        flags = future_flags(future, skus, self.forecast_dates(horizon))
        x, scale = self._window(self.arrays, rows, horizon, flags["promo"], flags["event"])
        with torch.random.fork_rng():  # a seed gives the same paths without touching global RNG state
            torch.manual_seed(seed)
            mean, log_var, (h, c) = self.module.encode(x)
            z = mean.repeat_interleave(s, 0) + torch.randn(n * s, mean.shape[1]) * (0.5 * log_var).exp().repeat_interleave(s, 0)
            future_x = x[:, self.module.hparams.context_length :, FUTURE].repeat_interleave(s, 0)
            state = (h.repeat_interleave(s, 1), c.repeat_interleave(s, 1))
            mu, alpha = self.module.decode(z, future_x, scale.repeat_interleave(s, 0), state)
            # Day by day, so that a shorter request draws the same first days.
            paths = torch.stack([negative_binomial(mu[:, t], alpha[:, t]).sample() for t in range(horizon)], 1)
        return paths.reshape(n, s, horizon).numpy()


ARCHITECTURES = {cls.network.architecture: cls for cls in (MLP, DeepAR, Transformer, VAELSTM)}
assert set(ARCHITECTURES) == set(NETWORKS)


def _cut(flags: np.ndarray | None, start: int, steps: int) -> np.ndarray | None:
    return None if flags is None else flags[:, start : start + steps]


def _pad(flags: np.ndarray | None, days: int) -> np.ndarray | None:
    """The first `days` columns of flags, unknown days (zero: a plain day) added where there are fewer."""
    return None if flags is None else np.pad(flags[:, :days], ((0, 0), (0, max(0, days - flags.shape[1]))))


def _rep(flags: np.ndarray | None, s: int) -> np.ndarray | None:
    return None if flags is None else np.repeat(flags, s, axis=0)


def _extend(
    a: PanelArrays, rows: np.ndarray, paths: np.ndarray, context: int, s: int, promo: np.ndarray | None, event: np.ndarray | None
) -> PanelArrays:
    """Each series' recent history repeated once per path and continued by that path's draws."""
    start, k = max(0, len(a.dates) - context - 1), paths.shape[1]
    past = slice(start, len(a.dates))

    def cont(arr: np.ndarray, ahead: np.ndarray) -> np.ndarray:
        return np.concatenate([np.repeat(arr[rows, past], s, axis=0), ahead], 1).astype(np.float32)

    last_price = np.repeat(a.price[rows, -1:], s, axis=0)
    flags = {
        name: cont(getattr(a, name), np.zeros((len(paths), k)) if f is None else np.repeat(f[:, :k], s, axis=0))
        for name, f in (("promo", promo), ("event", event))
    }
    return PanelArrays(
        [str(i) for i in range(len(paths))],
        pd.date_range(a.dates[start], periods=len(a.dates) - start + k),
        cont(a.y, paths),
        cont(a.observed, np.ones_like(paths)).astype(bool),
        cont(a.price, np.repeat(last_price, k, axis=1)),
        flags["promo"],
        flags["event"],
    )
