"""The recommender's PyTorch Lightning architectures, each owning its scoring, and their training loop.

- `bpr`: BPR matrix factorisation (Rendle et al. 2009): customer and item embeddings plus an item bias,
  trained so that a bought item outranks a uniformly sampled one.
- `sequence`: a self-attentive next-item model (SASRec-style, Kang & McAuley 2018): a causal transformer
  over each customer's purchase sequence, trained with a full softmax over the catalogue (a few thousand
  items, so no negative sampling is needed); a customer's score is read after their last purchase.
- `deepfm`: DeepFM (Guo et al. 2017) over customer, product and pair fields (supplyml.recommending.fields):
  a factorisation machine's pairwise field interactions and an MLP over the same field embeddings, summed
  into the logit that the customer buys the product in the next window. One model scores habits and new
  products on one scale, from past windows' outcomes.

All work on integer indices (customers 0..n_users-1, items 0..n_items-1) and read what they need from
`Purchases`; `supplyml.recommending.networks` maps ids to indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from supplyml.recommending.fields import NAMES, Fields

RECENCY = NAMES.index("recency")


@dataclass
class Purchases:
    """What an architecture learns from and scores with: (customer, item) purchase days, each customer's
    items in purchase order and, for `deepfm`, the fields at the cutoff and past windows' examples."""

    pairs: np.ndarray
    sequences: list[np.ndarray]
    fields: Fields | None = None
    examples: tuple[np.ndarray, np.ndarray] | None = None  # (codes, labels); training only


class Architecture(pl.LightningModule):
    """What the three share: a name, whether it reads `Purchases.fields`, and Adam on `lr` and `weight_decay`."""

    architecture: str
    uses_fields = False  # True: the caller builds `Purchases.fields` and `.examples` (supplyml.recommending.fields)
    optimizer = torch.optim.Adam

    def configure_optimizers(self):
        return self.optimizer(self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])


class BPR(Architecture):
    architecture = "bpr"

    def __init__(self, n_users: int, n_items: int, dim: int = 64, lr: float = 1e-2, weight_decay: float = 1e-5):
        super().__init__()
        self.save_hyperparameters()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        self.bias = nn.Embedding(n_items, 1)
        for emb in (self.user, self.item):
            nn.init.normal_(emb.weight, std=0.1)
        nn.init.zeros_(self.bias.weight)

    def _pair(self, users, items):
        return (self.user(users) * self.item(items)).sum(-1) + self.bias(items).squeeze(-1)

    def training_step(self, batch, _):
        users, pos = batch
        neg = torch.randint(self.hparams["n_items"], pos.shape, device=pos.device)
        loss = -nn.functional.logsigmoid(self._pair(users, pos) - self._pair(users, neg)).mean()
        self.log("train_loss", loss, prog_bar=False)
        return loss

    @torch.no_grad()
    def scores(self, users: np.ndarray, data: Purchases) -> np.ndarray:
        u = self.user(torch.as_tensor(users, dtype=torch.long))
        return (u @ self.item.weight.T + self.bias.weight.T).numpy()

    def dataset(self, data: Purchases) -> TensorDataset:
        pairs = data.pairs
        return TensorDataset(torch.as_tensor(pairs[:, 0], dtype=torch.long), torch.as_tensor(pairs[:, 1], dtype=torch.long))


class Sequence(Architecture):
    architecture = "sequence"
    optimizer = torch.optim.AdamW

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 64,
        max_len: int = 30,
        layers: int = 2,
        heads: int = 2,
        dropout: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=n_items)  # index n_items pads short sequences
        self.position = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def _hidden(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L, dim) states; position t has seen items 0..t only. Sequences are padded on the right, so
        the causal mask alone keeps padding out of every real position (a key-padding mask would leave
        all-masked rows, whose NaNs spread through the next layer)."""
        n = seq.shape[1]
        x = self.item(seq) + self.position(torch.arange(n, device=seq.device))
        causal = nn.Transformer.generate_square_subsequent_mask(n, device=seq.device)
        return self.norm(self.encoder(x, mask=causal, is_causal=True))

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.item.weight[:-1].T

    def training_step(self, batch, _):
        (seq,) = batch
        inputs, targets = seq[:, :-1], seq[:, 1:]
        logits = self._logits(self._hidden(inputs))
        loss = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=self.hparams["n_items"]
        )
        self.log("train_loss", loss, prog_bar=False)
        return loss

    @torch.no_grad()
    def scores(self, users: np.ndarray, data: Purchases) -> np.ndarray:
        """Next-item logits after each customer's last purchase (customers without history: all zero)."""
        seq = _pad([data.sequences[u] for u in users], self.hparams["max_len"], self.hparams["n_items"])
        last = (seq != self.hparams["n_items"]).sum(1) - 1
        out = np.zeros((len(users), self.hparams["n_items"]), dtype=np.float32)
        has = last >= 0
        if has.any():
            h = self._hidden(seq[has])
            out[has.numpy()] = self._logits(h[torch.arange(int(has.sum())), last[has]]).numpy()
        return out

    def dataset(self, data: Purchases) -> TensorDataset:
        sequences = data.sequences
        # Windows of max_len + 1 items (inputs and their next-item targets); long histories give several.
        n = self.hparams["max_len"] + 1
        windows = [s[max(0, end - n) : end] for s in sequences if len(s) > 1 for end in range(len(s), 1, -(n - 1))]
        return TensorDataset(_pad(windows, n, self.hparams["n_items"]))


def _pad(seqs: list[np.ndarray], length: int, pad: int) -> torch.Tensor:
    """The last `length` items of each sequence, padded on the right with `pad`."""
    out = torch.full((len(seqs), length), pad, dtype=torch.long)
    for r, s in enumerate(seqs):
        s = s[-length:]
        out[r, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


class DeepFM(Architecture):
    architecture = "deepfm"
    uses_fields = True

    def __init__(
        self,
        n_users: int,
        n_items: int,
        field_sizes: list[int],
        never_offset: float = 0.0,
        new_item_boost: float = 0.0,
        dim: int = 16,
        hidden: int = 64,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.embed = nn.ModuleList(nn.Embedding(n, dim) for n in field_sizes)
        self.weight = nn.ModuleList(nn.Embedding(n, 1) for n in field_sizes)  # the FM's first-order terms
        for emb in self.embed:
            nn.init.normal_(emb.weight, std=0.01)
        for w in self.weight:
            nn.init.zeros_(w.weight)
        self.bias = nn.Parameter(torch.zeros(1))
        self.deep = nn.Sequential(
            nn.Linear(len(field_sizes) * dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Logits for (B, fields) codes."""
        v = torch.stack([emb(codes[:, f]) for f, emb in enumerate(self.embed)], 1)  # (B, F, dim)
        first = torch.stack([w(codes[:, f]) for f, w in enumerate(self.weight)], 1).sum((1, 2))
        pairwise = 0.5 * (v.sum(1).pow(2) - v.pow(2).sum(1)).sum(1)  # sum over field pairs of <v_i, v_j>
        return self.bias + first + pairwise + self.deep(v.flatten(1)).squeeze(-1)

    def training_step(self, batch, _):
        codes, labels = batch
        loss = nn.functional.binary_cross_entropy_with_logits(self(codes), labels)
        self.log("train_loss", loss, prog_bar=False)
        return loss

    @torch.no_grad()
    def scores(self, users: np.ndarray, data: Purchases) -> np.ndarray:
        """Each customer's logits over the catalogue, from the fields at the cutoff. Training saw every habit
        but only a sample of the products never bought, so their odds are scaled back by the sampling rate
        (`never_offset`, its log): habits and new products are then on one scale, and `new_item_boost` is
        added to the new ones' log-odds."""
        assert data.fields is not None
        n_items = self.hparams["n_items"]
        out = np.empty((len(users), n_items), dtype=np.float32)
        step = max(1, 200_000 // n_items)  # ~200k pairs per pass bounds the (pairs, fields, dim) block
        for a in range(0, len(users), step):
            codes = torch.as_tensor(data.fields.codes(np.asarray(users[a : a + step])))
            offset = self.hparams["never_offset"] + self.hparams["new_item_boost"]
            logits = self(codes) + offset * (codes[:, RECENCY] == 0)
            out[a : a + step] = logits.reshape(-1, n_items).numpy()
        return out

    def dataset(self, data: Purchases) -> TensorDataset:
        assert data.examples is not None
        codes, labels = data.examples
        return TensorDataset(torch.as_tensor(codes, dtype=torch.long), torch.as_tensor(labels, dtype=torch.float32))


ARCHITECTURES = {cls.architecture: cls for cls in (BPR, Sequence, DeepFM)}


def fit(
    architecture: str,
    data: Purchases,
    n_users: int,
    n_items: int,
    params: dict,
    epochs: int,
    batch_size: int = 1024,
    seed: int = 0,
    accelerator: str = "auto",
):
    """Train one architecture on `data`. Returns the trained module on CPU, in eval mode."""
    cls = ARCHITECTURES[architecture]
    pl.seed_everything(seed, workers=True, verbose=False)
    module = cls(n_users, n_items, **params)
    examples = module.dataset(data)
    # The shuffled batches `DataLoader(shuffle=True)` draws, each gathered from the tensors in one index
    # instead of row by row and stacked: the same batches, a fraction of the time.
    generator = torch.Generator().manual_seed(seed)
    batches = BatchSampler(RandomSampler(examples, generator=generator), batch_size, drop_last=False)
    loader = DataLoader(examples, sampler=batches, batch_size=None, generator=generator)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(module, loader)
    return module.cpu().eval()
