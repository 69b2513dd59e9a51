"""The networks Optuna chooses between, all with a negative-binomial likelihood on per-series scaled counts.

- `DeepARNet`: an LSTM unrolled day by day over context and horizon, fed the previous day's demand
  (autoregressive; forecasts are drawn path by path).
- `MLPNet`: a direct multi-horizon MLP that reads the whole context window at once and emits
  the distribution of every forecast day in one pass (fast to train and to forecast).
- `TransformerNet`: a direct multi-horizon Transformer encoder over one token per context day and
  one per forecast day (known covariates only), read out at the forecast days' tokens.
- `VAELSTMNet`: a variational encoder of the context (an LSTM to a Gaussian latent) and an LSTM
  decoder from its state over the forecast days' known covariates; paths draw one latent each.

All take the same windows (see `windows.windows`), so data, training and tuning code is shared.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F

from supplyml.forecasting.windows import CALENDAR, EVENT, LAG, N_FEATURES, PRICE, PROMO, SCALE

FUTURE = [*CALENDAR, PROMO, EVENT]  # what is known about a forecast day in advance


def negative_binomial(mu: torch.Tensor, alpha: torch.Tensor) -> torch.distributions.NegativeBinomial:
    """NB with mean `mu` and variance mu + alpha * mu^2: counts, overdispersed, never negative."""
    total_count = 1.0 / alpha
    return torch.distributions.NegativeBinomial(total_count=total_count, logits=torch.log(mu) - torch.log(total_count))


def nb_params(raw_mu: torch.Tensor, raw_alpha: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu = F.softplus(raw_mu) * scale + 1e-6
    # DeepAR's scaling of the shape parameter keeps large and small series comparable.
    alpha = F.softplus(raw_alpha) / scale.sqrt() + 1e-6
    return mu, alpha


class _Likelihood(pl.LightningModule):
    """What the networks share: their six settings (saved as hyperparameters, which is how a saved model
    is rebuilt), and training and validation steps on the masked NB negative log-likelihood. Each network
    makes its layers in `build`."""

    def __init__(
        self, hidden_size: int, num_layers: int, dropout: float, learning_rate: float, context_length: int, horizon: int
    ):
        super().__init__()
        self.save_hyperparameters()
        self.build(hidden_size, num_layers, dropout, context_length, horizon)

    def build(self, hidden_size: int, num_layers: int, dropout: float, context_length: int, horizon: int) -> None:
        raise NotImplementedError

    def distribution(self, x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """NB mean and dispersion of the forecast days of the windows `x`; each network defines it."""
        raise NotImplementedError

    def _nll(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mu, alpha = self.distribution(batch["x"], batch["scale"])
        steps = mu.shape[1]
        y, mask = batch["y"][:, -steps:], batch["mask"][:, -steps:]
        log_prob = negative_binomial(mu, alpha).log_prob(y)
        return -(log_prob * mask).sum() / mask.sum().clamp(min=1)

    def training_step(self, batch, batch_idx):
        loss = self._nll(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["x"].shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._nll(batch), prog_bar=True, batch_size=batch["x"].shape[0])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams["learning_rate"])


class DeepARNet(_Likelihood):
    architecture = "deepar"

    def build(self, hidden_size: int, num_layers: int, dropout: float, context_length: int, horizon: int) -> None:
        self.rnn = nn.LSTM(N_FEATURES, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, 2)

    def forward(self, x: torch.Tensor, scale: torch.Tensor, state=None):
        """x: (B, T, F) features, scale: (B, 1). Returns NB mean and dispersion (B, T) and the LSTM state."""
        out, state = self.rnn(x, state)
        raw_mu, raw_alpha = self.head(out).unbind(-1)
        mu, alpha = nb_params(raw_mu, raw_alpha, scale)
        return mu, alpha, state

    def distribution(self, x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, alpha, _ = self(x, scale)
        return mu, alpha


class MLPNet(_Likelihood):
    """Context window -> the whole horizon's NB parameters (direct, no error feedback between days).

    Inputs: scaled log demand of the context days, their promotion and event flags, rolling means
    over the last 7 and 28 days, the last relative price, the series' log scale, and each forecast
    day's calendar, promotion and event features.
    """

    architecture = "mlp"

    def build(self, hidden_size: int, num_layers: int, dropout: float, context_length: int, horizon: int) -> None:
        c, h = context_length, horizon
        layers, width = [], 3 * c + 4 + h * len(FUTURE)
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_size), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden_size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * h)

    def distribution(self, x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C + h, F) window of context and h <= horizon forecast days. Returns NB mean and dispersion (B, h)."""
        c, h = self.hparams["context_length"], self.hparams["horizon"]
        steps = x.shape[1] - c
        if steps > h:
            raise ValueError(f"window has {steps} forecast days; this network forecasts {h} at once")
        # Step t carries demand of t - 1: steps 1..C hold the context days' own demand.
        demand = x[:, 1 : c + 1, LAG]
        level = torch.expm1(demand)
        rolling = torch.stack([level[:, -7:].mean(1), level[:, -28:].mean(1)], 1).log1p()
        future = x[:, c:, FUTURE]
        if steps < h:  # tuning's validation window when val_days < horizon: its days past the data look plain
            future = F.pad(future, (0, 0, 0, h - steps))
        inputs = torch.cat(
            [demand, x[:, :c, PROMO], x[:, :c, EVENT], rolling, x[:, c - 1, [PRICE, SCALE]], future[:, :h].flatten(1)], 1
        )
        raw = self.head(self.body(inputs)).view(-1, h, 2)
        mu, alpha = nb_params(raw[..., 0], raw[..., 1], scale)
        return mu[:, :steps], alpha[:, :steps]


class TransformerNet(_Likelihood):
    """Context window and known future -> the whole horizon's NB parameters, by self-attention.

    Each context day is a token of its features (its own demand, price, scale, flags, calendar); each
    forecast day a token of what is known ahead (calendar, promotion, event). Both get a
    learnt embedding of their position in the window, and a stack of `num_layers` encoder layers
    (`hidden_size` wide, pre-norm, 4 heads where the width allows) lets every forecast day attend to
    every context day and to the other forecast days: the TFT's static-free core without its gating, or
    a PatchTST with patches of one day. Each forecast day's output token gives its NB mean and
    dispersion, so its marginals are exact and its sample paths are drawn as the MLP's are.
    """

    architecture = "transformer"

    def build(self, hidden_size: int, num_layers: int, dropout: float, context_length: int, horizon: int) -> None:
        heads = next(k for k in (4, 2, 1) if hidden_size % k == 0)
        self.past = nn.Linear(N_FEATURES, hidden_size)
        self.ahead = nn.Linear(len(FUTURE), hidden_size)
        self.position = nn.Parameter(torch.zeros(context_length + horizon, hidden_size))
        layer = nn.TransformerEncoderLayer(hidden_size, heads, 2 * hidden_size, dropout, batch_first=True, norm_first=True)
        # No nested tensors: they serve padded batches, and every window here is full.
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(hidden_size, 2)

    def distribution(self, x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C + h, F) window of context and h <= horizon forecast days. Returns NB mean and dispersion (B, h)."""
        c, h = self.hparams["context_length"], self.hparams["horizon"]
        steps = x.shape[1] - c
        if steps > h:
            raise ValueError(f"window has {steps} forecast days; this network forecasts {h} at once")
        future = x[:, c:, FUTURE]
        if steps < h:  # as the MLP: every day of the trained horizon is read, the unknown ones plain
            future = F.pad(future, (0, 0, 0, h - steps))
        # Row t carries the demand of day t - 1: each context day's token takes its own day's demand (the
        # last one's is in row c), so the last observed day is read; forecast days' demand never is.
        past = x[:, :c].clone()
        past[..., LAG] = x[:, 1 : c + 1, LAG]
        tokens = torch.cat([self.past(past), self.ahead(future[:, :h])], 1) + self.position
        raw = self.head(self.encoder(tokens)[:, c:])
        mu, alpha = nb_params(raw[..., 0], raw[..., 1], scale)
        return mu[:, :steps], alpha[:, :steps]


class VAELSTMNet(_Likelihood):
    """A variational encoder of the context and an LSTM decoder that samples the horizon.

    The encoder, an LSTM over the context days' features (with the last context day's demand, which
    the first forecast step carries as its lag), ends in a state and in the mean and log-variance of a
    Gaussian latent z of `hidden_size // 4` dimensions. The decoder LSTM starts from the encoder's state
    and reads, each forecast day, that day's known covariates (calendar, promotion, event) with z, and
    emits the day's NB mean and dispersion. (With the context reaching the decoder only through z, the
    posterior collapsed to the prior on two planted weekly profiles and both series got one blended
    forecast; the deterministic state carries the profile, z what the context leaves uncertain.)

    Training maximises the ELBO per window: the NB log-likelihood of the observed days at a
    reparameterised draw of z, less the KL divergence of q(z | context) from N(0, I); the training loss is
    its negative per observed day (val_loss the NB negative log-likelihood at the posterior mean, as
    the other networks'), and `train_elbo` / `val_elbo` log the ELBO per window. A sample path draws
    one z and then each day's count, so a path's days share its z: that is where their dependence comes
    from, beyond the shared state.
    """

    architecture = "vae_lstm"

    def build(self, hidden_size: int, num_layers: int, dropout: float, context_length: int, horizon: int) -> None:
        latent, between = max(2, hidden_size // 4), dropout if num_layers > 1 else 0.0
        self.encoder = nn.LSTM(N_FEATURES, hidden_size, num_layers, batch_first=True, dropout=between)
        self.posterior = nn.Linear(hidden_size, 2 * latent)
        self.decoder = nn.LSTM(len(FUTURE) + latent, hidden_size, num_layers, batch_first=True, dropout=between)
        self.head = nn.Linear(hidden_size, 2)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Windows x (B, C + h >= 1, F): q(z | context)'s mean and log-variance (B, latent) and the encoder's state."""
        _, state = self.encoder(x[:, : self.hparams["context_length"] + 1])
        mean, log_var = self.posterior(state[0][-1]).chunk(2, -1)
        return mean, log_var, state

    def decode(self, z, future, scale, state) -> tuple[torch.Tensor, torch.Tensor]:
        """NB mean and dispersion (B, h) of the forecast days with known covariates `future` (B, h, len(FUTURE))."""
        out, _ = self.decoder(torch.cat([future, z[:, None].expand(-1, future.shape[1], -1)], -1), state)
        raw_mu, raw_alpha = self.head(out).unbind(-1)
        return nb_params(raw_mu, raw_alpha, scale)

    def distribution(self, x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """At the posterior mean of z: the days' NB parameters (B, h)."""
        mean, _, state = self.encode(x)
        return self.decode(mean, x[:, self.hparams["context_length"] :, FUTURE], scale, state)

    def _nll(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x, c = batch["x"], self.hparams["context_length"]
        mean, log_var, state = self.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        mu, alpha = self.decode(z, x[:, c:, FUTURE], batch["scale"], state)
        y, mask = batch["y"][:, -mu.shape[1] :], batch["mask"][:, -mu.shape[1] :]
        log_lik = (negative_binomial(mu, alpha).log_prob(y) * mask).sum(1)
        kl = 0.5 * (mean**2 + log_var.exp() - 1 - log_var).sum(1)
        self.log(f"{'train' if self.training else 'val'}_elbo", (log_lik - kl).mean(), batch_size=x.shape[0])
        # Training minimises the negative ELBO per observed day; validation reports the NB negative
        # log-likelihood at the posterior mean, as the other networks' val_loss, so that tuning compares
        # the architectures on one scale.
        return -(log_lik - kl if self.training else log_lik).sum() / mask.sum().clamp(min=1)


NETWORKS = {net.architecture: net for net in (DeepARNet, MLPNet, TransformerNet, VAELSTMNet)}
