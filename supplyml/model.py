"""DeepAR-style forecaster: an LSTM over a context window with a negative-binomial likelihood."""
from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F

N_FEATURES = 7  # lagged scaled demand, 4 calendar, log relative price, log scale


def negative_binomial(mu: torch.Tensor, alpha: torch.Tensor) -> torch.distributions.NegativeBinomial:
    """NB with mean `mu` and variance mu + alpha * mu^2: counts, overdispersed, never negative."""
    total_count = 1.0 / alpha
    return torch.distributions.NegativeBinomial(total_count=total_count, logits=torch.log(mu) - torch.log(total_count))


class DeepAR(pl.LightningModule):
    """Holds the network and its train/validation steps; data and sampling live elsewhere."""

    def __init__(self, hidden_size: int = 40, num_layers: int = 2, dropout: float = 0.1,
                 learning_rate: float = 3e-3, context_length: int = 56):
        super().__init__()
        self.save_hyperparameters()
        self.rnn = nn.LSTM(N_FEATURES, hidden_size, num_layers, batch_first=True,
                           dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, 2)

    def forward(self, x: torch.Tensor, scale: torch.Tensor, state=None):
        """x: (B, T, F) features, scale: (B, 1). Returns NB mean and dispersion (B, T) and the LSTM state."""
        out, state = self.rnn(x, state)
        raw_mu, raw_alpha = self.head(out).unbind(-1)
        mu = F.softplus(raw_mu) * scale + 1e-6
        # DeepAR's scaling of the shape parameter keeps large and small series comparable.
        alpha = F.softplus(raw_alpha) / scale.sqrt() + 1e-6
        return mu, alpha, state

    def _nll(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mu, alpha, _ = self(batch["x"], batch["scale"])
        log_prob = negative_binomial(mu, alpha).log_prob(batch["y"])
        mask = batch["mask"]
        return -(log_prob * mask).sum() / mask.sum().clamp(min=1)

    def training_step(self, batch, batch_idx):
        loss = self._nll(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["x"].shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._nll(batch), prog_bar=True, batch_size=batch["x"].shape[0])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)
