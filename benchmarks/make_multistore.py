"""Generate the multi-store benchmark panel: a synthetic daily demand panel of a chain of stores.

A second dataset with a different shape from Online Retail: 5 stores x 40 items over 3 years
(2021-01-01 .. 2023-12-31), one row per (store, item, day), in foreign column names so the panel
column mapping is exercised. Demand is negative-binomial around a mean built from

    item level x store effect x weekly profile x yearly season x slow trend
    x price response x promotion lift x event lift

with a share of slow, intermittent items, a few items launched later, one store closed on Sundays,
price changes, promotions that cut the price and lift demand, and marked event days (Black Friday,
the Easter weekend, 23/24 and 31 December). Seeded and vectorised: the same seed gives the same file,
in about a second.

    .venv/bin/python benchmarks/make_multistore.py [--out data/multistore/multistore.parquet] [--seed 2021]

Train on it with (see data/multistore/README.md):

    supplyml pipeline run --data data/multistore/multistore.parquet --format panel \\
        --set data.panel_columns.unique_id=item --set data.panel_columns.ds=date \\
        --set data.panel_columns.y=units --set data.panel_columns.price=unit_price \\
        --set data.panel_columns.promo=on_promo --set data.panel_columns.event=holiday \\
        --set data.panel_columns.location=store
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from dateutil.easter import easter

log = logging.getLogger("benchmarks.make_multistore")

SEED = 2021
OUT = Path(__file__).resolve().parent.parent / "data" / "multistore" / "multistore.parquet"
# Mon .. Sun: quiet early week, busy Friday and Saturday.
WEEKLY = np.array([0.80, 0.85, 0.90, 0.95, 1.15, 1.40, 0.95])
SLOW_SHARE = 0.25  # items selling well under one unit a day per store
LATE_LAUNCHES = 4  # items that start selling during the period (no rows before their launch)
CLOSED_ON_SUNDAY = "S05"
MISSING_PRICE_SHARE = 0.002  # rows whose price the export lost: the series' last price is used
MAPPING = {
    "unique_id": "item",
    "ds": "date",
    "y": "units",
    "price": "unit_price",
    "promo": "on_promo",
    "event": "holiday",
    "location": "store",
}


@dataclass(frozen=True)
class Shape:
    stores: int = 5
    items: int = 40
    start: str = "2021-01-01"
    end: str = "2023-12-31"
    slow_share: float = SLOW_SHARE


def event_lifts(days: pd.DatetimeIndex) -> np.ndarray:
    """Demand multiplier of each day: > 1 on event days, 1 elsewhere."""
    lift = np.ones(len(days))
    for year in sorted(set(days.year)):
        nov1 = pd.Timestamp(year, 11, 1)
        thanksgiving = nov1 + pd.Timedelta(days=(3 - nov1.dayofweek) % 7 + 21)  # 4th Thursday
        sunday = pd.Timestamp(easter(year))
        for day, factor in [
            (thanksgiving + pd.Timedelta(days=1), 2.2),  # Black Friday
            (sunday - pd.Timedelta(days=2), 1.4),  # Good Friday
            (sunday - pd.Timedelta(days=1), 1.7),  # Easter Saturday
            (sunday, 1.3),
            (pd.Timestamp(year, 12, 23), 1.6),
            (pd.Timestamp(year, 12, 24), 2.0),
            (pd.Timestamp(year, 12, 31), 1.3),
        ]:
            lift[days == day] = factor
    return lift


def generate(seed: int = SEED, shape: Shape = Shape()) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.date_range(shape.start, shape.end, freq="D")
    n_s, n_i, n_t = shape.stores, shape.items, len(days)
    stores = [f"S{s + 1:02d}" for s in range(n_s)]
    items = [f"{10001 + i}" for i in range(n_i)]  # numeric-looking codes that must stay text
    t_years = np.arange(n_t) / 365.25

    # Items: level, slow movers, weekly amplitude, season, trend, price and its elasticity.
    slow = rng.random(n_i) < shape.slow_share
    level = np.where(slow, rng.uniform(0.05, 0.4, n_i), rng.lognormal(np.log(4.0), 0.6, n_i))
    dispersion = np.where(slow, rng.uniform(0.3, 1.0, n_i), rng.uniform(2.0, 10.0, n_i))
    weekly_amp = rng.uniform(0.5, 1.5, n_i)
    season_kind = rng.choice(3, n_i, p=[0.35, 0.35, 0.3])  # summer, winter/gift, little season
    peak_doy = np.choose(season_kind, [rng.normal(190, 15, n_i), rng.normal(345, 10, n_i), np.zeros(n_i)])
    season_amp = np.choose(season_kind, [rng.uniform(0.4, 0.8, n_i), rng.uniform(0.4, 0.8, n_i), rng.uniform(0.0, 0.1, n_i)])
    growth = rng.normal(0.03, 0.08, n_i)  # per year
    event_sensitivity = np.where(season_kind == 1, rng.uniform(0.8, 1.3, n_i), rng.uniform(0.2, 0.8, n_i))
    base_price = np.round(rng.lognormal(np.log(6.0), 0.6, n_i), 2)
    elasticity = rng.uniform(1.0, 2.5, n_i)
    promo_display_lift = rng.uniform(1.1, 1.4, n_i)
    store_effect = rng.lognormal(0.0, 0.35, n_s)
    store_price = rng.uniform(0.95, 1.05, n_s)

    # Regular price: a few permanent changes per item over the period, the same in every store.
    regular = np.tile(base_price[:, None], (1, n_t))
    for i in range(n_i):
        for day in rng.integers(30, n_t - 30, rng.poisson(1.5)):
            regular[i, day:] *= rng.uniform(0.9, 1.15)

    # Promotions: per store and item, about four 4-10 day episodes a year at 10-35% off.
    promo = np.zeros((n_s, n_i, n_t), dtype=bool)
    discount = np.zeros((n_s, n_i, n_t))
    for s in range(n_s):
        for i in range(n_i):
            for day in rng.integers(0, n_t, rng.poisson(4 * n_t / 365.25)):
                span = slice(day, day + rng.integers(4, 11))
                promo[s, i, span] = True
                discount[s, i, span] = rng.uniform(0.10, 0.35)
    price = np.round(store_price[:, None, None] * regular[None] * (1 - discount), 2)

    doy = days.dayofyear.to_numpy()
    weekly = 1 + weekly_amp[:, None] * (WEEKLY[days.dayofweek.to_numpy()][None] - 1)
    yearly = np.exp(season_amp[:, None] * np.cos(2 * np.pi * (doy[None] - peak_doy[:, None]) / 365.25))
    trend = np.exp(growth[:, None] * t_years[None])
    lift = event_lifts(days)
    events = 1 + event_sensitivity[:, None] * (lift[None] - 1)
    mean = (
        level[None, :, None]
        * store_effect[:, None, None]
        * (weekly * yearly * trend * events)[None]
        * (price / (store_price[:, None, None] * base_price[None, :, None])) ** -elasticity[None, :, None]
        * np.where(promo, promo_display_lift[None, :, None], 1.0)
    )
    if CLOSED_ON_SUNDAY in stores:
        mean[stores.index(CLOSED_ON_SUNDAY), :, days.dayofweek == 6] = 0.0
    k = np.broadcast_to(dispersion[None, :, None], mean.shape)
    units = rng.negative_binomial(k, k / (k + mean))

    frame = pd.DataFrame(
        {
            "date": np.tile(days.to_numpy(), n_s * n_i),
            "store": np.repeat(stores, n_i * n_t),
            "item": np.tile(np.repeat(items, n_t), n_s),
            "units": units.ravel().astype(np.int64),
            "unit_price": price.ravel(),
            "on_promo": promo.ravel(),
            "holiday": np.tile((lift > 1).astype(np.int8), n_s * n_i),
        }
    )
    # A few items launch during the period: the export has no rows for them before that.
    late = min(LATE_LAUNCHES, n_i // 10) if n_t > 450 else 0  # none in small test shapes
    launch = dict(zip(rng.choice(items, late, replace=False), days[rng.integers(180, n_t - 270, late)]))
    frame = frame[frame["date"] >= frame["item"].map(launch).fillna(days[0])]
    frame.loc[rng.random(len(frame)) < MISSING_PRICE_SHARE, "unit_price"] = np.nan
    return frame.sort_values(["date", "store", "item"], ignore_index=True)


def summary(frame: pd.DataFrame, path: Path) -> dict:
    series = frame.groupby(["item", "store"])["units"]
    zero_share = series.apply(lambda u: (u == 0).mean())
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "rows": len(frame),
        "series": int(series.ngroups),
        "stores": int(frame["store"].nunique()),
        "items": int(frame["item"].nunique()),
        "days": int(frame["date"].nunique()),
        "first_day": str(frame["date"].min().date()),
        "last_day": str(frame["date"].max().date()),
        "units": int(frame["units"].sum()),
        "mean_units_per_row": round(float(frame["units"].mean()), 3),
        "zero_share": round(float((frame["units"] == 0).mean()), 3),
        "intermittent_series": int((zero_share > 0.5).sum()),  # more than half the days without a sale
        "promo_share": round(float(frame["on_promo"].mean()), 3),
        "event_days": int(frame.loc[frame["holiday"] == 1, "date"].nunique()),
        "missing_prices": int(frame["unit_price"].isna().sum()),
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--stores", type=int, default=Shape.stores)
    parser.add_argument("--items", type=int, default=Shape.items)
    parser.add_argument("--start", default=Shape.start)
    parser.add_argument("--end", default=Shape.end)
    parser.add_argument("--slow-share", type=float, default=Shape.slow_share, help="share of slow, intermittent items")
    args = parser.parse_args(argv)
    frame = generate(args.seed, Shape(args.stores, args.items, args.start, args.end, args.slow_share))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(args.out, index=False)
    facts = summary(frame, args.out)
    print(pd.Series(facts).to_string())
    print("column mapping: " + " ".join(f"--set data.panel_columns.{k}={v}" for k, v in MAPPING.items()))
    log.info("wrote %s", json.dumps(facts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
