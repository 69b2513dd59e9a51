"""Generate the store x item benchmark panel: smooth, high-volume, Poisson demand over five years.

The shape of the panel issue 19 was measured on (500 item x store series, 5 years daily), and of the
public store-item demand data sets: 10 stores x 50 items, 2013-01-01 .. 2017-12-31, every series
selling every day. Demand is Poisson around

    item level x store effect x weekly profile x yearly season x trend

so its noise is far below the negative-binomial panels' (make_multistore.py), and a forecast's
errors are mostly its own: the regime where the totals an order is read from are most sensitive to
how the forecaster forms its paths. Seeded; the same seed gives the same file in about a second.

    .venv/bin/python benchmarks/make_store_item.py [--out .supplyml/data/store_item.parquet] [--seed 7]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

# Generated, not versioned: the seed is the data version.
OUT = Path(__file__).resolve().parent.parent / ".supplyml" / "data" / "store_item.parquet"
# Mon .. Sun: a quiet start of the week, busy weekends.
WEEKLY = np.array([0.80, 0.95, 0.95, 1.00, 1.05, 1.10, 1.15])


def generate(
    seed: int = 7, stores: int = 10, items: int = 50, start: str = "2013-01-01", end: str = "2017-12-31"
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.date_range(start, end)
    item = rng.uniform(10, 60, items)
    store = rng.uniform(0.6, 1.4, stores)
    season = 1 + 0.3 * np.sin(2 * np.pi * (days.dayofyear.to_numpy() - 80) / 365.25)
    years = (days - days[0]).days.to_numpy() / 365.25
    trend = 1 + 0.08 * years
    daily = WEEKLY[days.dayofweek] * season * trend
    mean = store[:, None, None] * item[None, :, None] * daily[None, None, :]
    ids = [f"S{s:02d}_I{i:02d}" for s in range(stores) for i in range(items)]
    return pd.DataFrame(
        {"unique_id": np.repeat(ids, len(days)), "ds": np.tile(days, len(ids)), "y": rng.poisson(mean).reshape(-1).astype(float)}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    frame = generate(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(args.out, index=False)
    print(
        f"{args.out}: {frame['unique_id'].nunique()} series x {frame['ds'].nunique()} days, "
        f"mean demand {frame['y'].mean():.1f} a day"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
