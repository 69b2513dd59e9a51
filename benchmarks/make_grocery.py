"""Generate the young grocery shop's panel: four months of daily demand for 1,700 products.

The shape of the grocery export issue 20 was tried with: a shop that has sold online for four months,
about 1,450 products with the 60 selling days a series needs (features.min_selling_days), no invoice
numbers. Demand per product is negative binomial
around

    product level x weekly profile (Friday and Saturday peaks, a quiet Sunday) x promotion uplift

with levels spread over three orders of magnitude, so the panel holds fast movers, slow movers and
intermittent ones. A fifth of the products are launched during the four months, and about one in
twenty stops selling before the end (delisted). Promotions run a week at a time, at 20% off with an
uplift. Seeded; the same seed gives the same file in about a second.

    .venv/bin/python benchmarks/make_grocery.py [--out .supplyml/data/grocery.parquet] [--seed 11]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

# Generated, not versioned: the seed is the data version.
OUT = Path(__file__).resolve().parent.parent / ".supplyml" / "data" / "grocery.parquet"
# Mon .. Sun
WEEKLY = np.array([0.90, 0.85, 0.90, 1.00, 1.25, 1.40, 0.70])
DISPERSION = 3.0  # negative binomial size: variance = mean + mean^2 / 3


def generate(seed: int = 11, products: int = 1700, start: str = "2024-01-01", days: int = 121) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ds = pd.date_range(start, periods=days)
    level = np.exp(rng.normal(1.0, 1.0, products))  # median 2.7 a day; a tenth below 0.8, a tenth above 10
    price = np.round(np.exp(rng.normal(1.0, 0.6, products)), 2)
    first = np.where(rng.uniform(size=products) < 0.2, rng.integers(0, days - 60, products), 0)
    last = np.where(rng.uniform(size=products) < 0.05, rng.integers(days - 30, days, products), days)
    promo = np.zeros((products, days), dtype=bool)
    for p in np.flatnonzero(rng.uniform(size=products) < 0.3):
        week = rng.integers(first[p], max(first[p] + 1, last[p] - 7))
        promo[p, week : week + 7] = True
    mean = level[:, None] * WEEKLY[ds.dayofweek][None, :] * np.where(promo, 1.8, 1.0)
    y = rng.negative_binomial(DISPERSION, DISPERSION / (DISPERSION + mean)).astype(float)
    t = np.arange(days)[None, :]
    live = (t >= first[:, None]) & (t < last[:, None])
    ids = np.array([f"P{p:05d}" for p in range(products)])
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(ids, days),
            "ds": np.tile(ds, products),
            "y": y.ravel(),
            "price": (price[:, None] * np.where(promo, 0.8, 1.0)).ravel(),
            "promo": promo.ravel().astype(float),
        }
    )
    return frame[live.ravel()].reset_index(drop=True)  # rows only while a product is listed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    frame = generate(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(args.out, index=False)
    print(
        f"{args.out}: {frame['unique_id'].nunique()} products x {frame['ds'].nunique()} days, "
        f"{(frame['y'] == 0).mean():.0%} zero days, mean demand {frame['y'].mean():.1f} a day"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
