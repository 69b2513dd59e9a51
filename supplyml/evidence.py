"""The evidence a promotion rests on: a challenger and a champion scored on the same units, and a paired
test of whether their difference is larger than its noise.

A unit is what both models are scored on: a series at one origin, a customer, a series at one review.
Units group into blocks (a series with all its origins and reviews, a customer), and blocks are the
independent draws: a series' errors at overlapping origins are correlated, so the test never
separates them. With `weight` per unit, a figure is the weighted sum over units, so a WRMSSE averaged
over origins, a pooled total cost and a mean NDCG all are one.

The test (the same for every family) is a sign-flip test on the sum of the block differences: under
"no difference" each block's difference is as likely to flip sign. It is exact (scipy's permutation test)
while 2^blocks <= `n_resamples`, and scipy's Monte Carlo test of that null beyond. The interval is scipy's
bootstrap (BCa) of the same sum over blocks. A margin asks for a difference beyond a fraction of the
champion's figure: two fits of one recipe with other seeds differ by more than their series' noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

# scipy resamples every block at once unless batched: (resamples x blocks) floats and indices, and BCa's
# jackknife (blocks x blocks), 10 GB for one comparison at 16k series. Batches of this many values bound it.
BATCH_VALUES = 2**20
TEST = (
    "sign-flip test on paired block differences (exact: scipy.stats.permutation_test; beyond 2^blocks > resamples: "
    "scipy.stats.monte_carlo_test), BCa bootstrap interval"
)
COLUMNS = ("block", "origin", "challenger", "champion", "weight")


@dataclass
class Comparison:
    """A challenger against a champion on one metric. `difference` is challenger minus champion;
    `p_better` and `p_worse` are the one-sided p-values that the challenger is better or worse."""

    metric: str
    greater_is_better: bool
    challenger: float
    champion: float
    difference: float
    low: float
    high: float
    confidence: float
    p_better: float
    p_worse: float
    blocks: int
    units: int
    per_origin: list[dict]  # {"origin", "challenger", "champion"}: the figure at each origin
    margin: float = 0.0  # better and worse mean by more than this fraction of the champion's figure
    test: str = TEST

    def better(self, alpha: float) -> bool:
        return self.p_better < alpha

    def worse(self, alpha: float) -> bool:
        return self.p_worse < alpha

    def describe(self, against: str = "champion") -> str:
        rel = f" ({self.difference / abs(self.champion):+.1%})" if self.champion else ""
        origins = ", ".join(f"{o['origin']}: {o['challenger']:.4g} vs {o['champion']:.4g}" for o in self.per_origin)
        return (
            f"{self.metric} {self.challenger:.4g} vs {against} {self.champion:.4g}, difference "
            f"{self.difference:+.4g}{rel}, {self.confidence:.0%} interval [{self.low:+.4g}, {self.high:+.4g}], "
            f"p(better) {self.p_better:.3g}, p(worse) {self.p_worse:.3g} over {self.blocks} blocks"
            f"{'; per origin ' + origins if len(self.per_origin) > 1 else ''}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def units(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` checked as evidence: the columns `COLUMNS` (`weight` defaults to 1), finite figures only."""
    frame = frame.assign(weight=frame["weight"] if "weight" in frame else 1.0)
    missing = [c for c in COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"evidence lacks columns {missing}")
    finite = np.isfinite(frame[["challenger", "champion", "weight"]].to_numpy(dtype=float)).all(axis=1)
    if not finite.any():
        raise ValueError("no unit has a finite figure for both models: there is no evidence to compare")
    return frame.loc[finite, list(COLUMNS)]


def compare(
    metric: str,
    frame: pd.DataFrame,
    *,
    greater_is_better: bool,
    pooled: str = "sum",
    margin: float = 0.0,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> Comparison:
    """The paired comparison of the units in `frame` (columns `COLUMNS`). `pooled="sum"`: the figure is
    the weighted sum over every unit (a total cost); `"mean"`: the mean over origins of each origin's
    weighted sum (a WRMSSE, whose weights sum to 1 at each origin, averaged over origins).

    `margin`: "better" and "worse" mean by more than this fraction of the champion's figure. The nulls
    are then challenger = (1 -+ margin) x champion, tested on each block's shifted difference."""
    if pooled not in ("sum", "mean"):
        raise ValueError(f"pooled must be 'sum' or 'mean', got {pooled!r}")
    frame = units(frame)
    weighted = frame.assign(challenger=frame["challenger"] * frame["weight"], champion=frame["champion"] * frame["weight"])
    per_origin = weighted.groupby("origin", sort=True)[["challenger", "champion"]].sum()
    if pooled == "mean":
        weighted[["challenger", "champion"]] /= len(per_origin)
    blocks = weighted.groupby("block", sort=True)[["challenger", "champion"]].sum()
    ours, theirs = blocks["challenger"].to_numpy(), blocks["champion"].to_numpy()
    diff = ours - theirs
    up, down = 1 + margin, 1 - margin
    # Above the champion by more than the margin, and below it by more than the margin.
    high_side = _p_value(ours - up * theirs, "greater", n_resamples, seed)
    low_side = _p_value(ours - down * theirs, "less", n_resamples, seed)
    low, high = _interval(diff, confidence, n_resamples, seed)
    return Comparison(
        metric=metric,
        greater_is_better=greater_is_better,
        challenger=float(ours.sum()),
        champion=float(theirs.sum()),
        difference=float(diff.sum()),
        low=low,
        high=high,
        confidence=confidence,
        p_better=high_side if greater_is_better else low_side,
        p_worse=low_side if greater_is_better else high_side,
        margin=margin,
        blocks=len(blocks),
        units=len(frame),
        per_origin=[
            {"origin": _label(o), "challenger": float(r["challenger"]), "champion": float(r["champion"])}
            for o, r in per_origin.iterrows()
        ],
    )


def _label(origin) -> str:
    return str(origin.date()) if isinstance(origin, pd.Timestamp) else str(origin)


def _batch(n: int) -> int:
    """Resamples per vectorised call: about `BATCH_VALUES` values of `n` blocks each."""
    return max(1, BATCH_VALUES // n)


def _total(d: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sum(d, axis=axis)


def _p_value(d: np.ndarray, alternative: str, n_resamples: int, seed: int) -> float:
    """One-sided p-value that the block differences `d` sum to more ("greater") or less than chance:
    each block's sign flips under the null. Exact (scipy's one-sample `permutation_type="samples"`) while
    every sign pattern fits in `n_resamples`; beyond, scipy's Monte Carlo test of the same null, whose
    draws are the blocks' magnitudes with random signs: scipy's sign-flip path loops over blocks in Python
    once per batch, which at 16k blocks costs more than the rest of a comparison."""
    if np.allclose(d, 0, rtol=0, atol=1e-12):
        return 1.0  # the same figures everywhere: nothing to test, and no sign of a difference
    if len(d) == 1:  # two sign flips, d and -d (scipy asks for two observations)
        return 0.5 if (d[0] > 0 if alternative == "greater" else d[0] < 0) else 1.0
    rng = np.random.default_rng(seed)
    if 2 ** len(d) <= n_resamples:
        res = stats.permutation_test(
            (d,), _total, permutation_type="samples", vectorized=True, n_resamples=n_resamples, alternative=alternative, rng=rng
        )
    else:
        magnitude = np.abs(d)

        def flipped(size: tuple[int, ...]) -> np.ndarray:
            return np.where(rng.integers(0, 2, size, dtype=bool), -magnitude, magnitude)

        res = stats.monte_carlo_test(
            d, flipped, _total, vectorized=True, n_resamples=n_resamples, batch=_batch(len(d)), alternative=alternative
        )
    return float(res.pvalue)


def _interval(diff: np.ndarray, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    if len(diff) < 2 or np.ptp(diff) == 0:
        return float(diff.sum()), float(diff.sum())  # no spread to resample
    for method in ("BCa", "percentile"):  # percentile where BCa is undefined (e.g. one block carries everything)
        res = stats.bootstrap(
            (diff,),
            np.sum,
            confidence_level=confidence,
            n_resamples=n_resamples,
            batch=_batch(len(diff)),
            method=method,
            rng=np.random.default_rng(seed),
        )
        low, high = res.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            break
    return float(low), float(high)
