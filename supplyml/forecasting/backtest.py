"""Rolling-origin backtest: the champion recipe against its peers, and the replenishment policies built on each.

Origins sit one horizon apart and end with the data: with 3 origins and a 28-day horizon the model is
refitted on everything before day -84, -56 and -28 and scored on the 28 days that follow. A series
is scored at an origin once it has a horizon of history before it; younger series join later origins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from supplyml import simulation as sim
from supplyml.config import Config
from supplyml.forecasting import Forecaster, report
from supplyml.forecasting.metrics import Actuals, coverage, quantile_col
from supplyml.forecasting.peers import forecast_peers

log = logging.getLogger(__name__)
MODEL = "supplyml"
METRICS = ["wrmsse", "mase", "wspl", "coverage_50", "coverage_95", "bias"]
POLICIES = {"forecast": "forecast base stock", "classical": "28-day MA + normal safety stock", "perfect": "perfect foresight"}


def format_table(table: pd.DataFrame) -> str:
    return table.to_string(float_format=lambda v: f"{v:.3f}")


def origins(panel: pd.DataFrame, horizon: int, n: int) -> list[pd.Timestamp]:
    """First forecast day of each origin, oldest first."""
    end = panel["ds"].max()
    starts = [end - pd.Timedelta(days=horizon * k - 1) for k in range(n, 0, -1)]
    if starts[0] <= panel["ds"].min() + pd.Timedelta(days=horizon):
        raise ValueError(
            f"{n} origins of {horizon} days need more than {(n + 1) * horizon} days of data; "
            f"the panel has {(end - panel['ds'].min()).days + 1}"
        )
    return starts


@dataclass
class Origin:
    """Everything scored at one forecast origin."""

    start: pd.Timestamp
    scores: list[dict]  # one row per model
    forecasts: dict[str, pd.DataFrame]  # model -> unique_id, ds, mean, q...
    test: pd.DataFrame
    sims: dict[str, sim.Simulation]
    totals: pd.DataFrame  # per series and review: actual L+R total and the forecast policy's quantiles of it
    units: pd.DataFrame  # per series: the champion recipe's figures and each policy's (the gate's paired units)


@dataclass
class Backtest:
    per_origin: pd.DataFrame  # origin, model, metrics..., seconds
    forecasts: dict[str, pd.DataFrame]  # model -> unique_id, ds, origin, mean, q...
    actuals: pd.DataFrame  # the scored panel rows
    inventory: pd.DataFrame  # policy -> cycle_service_level, fill_rate, avg_on_hand, costs
    on_hand: pd.DataFrame  # day -> units on hand across series, one column per policy
    totals: pd.DataFrame  # see Origin.totals
    units: pd.DataFrame  # see Origin.units, with its origin

    @classmethod
    def from_origins(cls, results: list[Origin]) -> Backtest:
        per_origin = pd.DataFrame([row for r in results for row in r.scores])
        forecasts = {
            m: pd.concat([r.forecasts[m].assign(origin=r.start) for r in results], ignore_index=True)
            for m in results[0].forecasts
        }
        actuals = pd.concat([r.test for r in results], ignore_index=True)
        totals = pd.concat([r.totals.assign(origin=r.start) for r in results], ignore_index=True)
        units = pd.concat([r.units.assign(origin=r.start) for r in results]).reset_index()
        return cls(per_origin, forecasts, actuals, *_pool([r.sims for r in results], [r.start for r in results]), totals, units)

    def calibration(self, target: float) -> dict[str, float]:
        """Coverage of the champion's 50% and 95% intervals for daily values and for lead-time + review
        totals (the window an order covers), and the share of windows whose total stayed within the
        order-up-to level S, next to the realised cycle service level and its target."""
        daily = self.per_origin[self.per_origin["model"] == MODEL]
        t = self.totals
        return {
            "daily_coverage_50": float(daily["coverage_50"].mean()),
            "daily_coverage_95": float(daily["coverage_95"].mean()),
            "total_coverage_50": coverage(t["actual"], t[quantile_col(0.25)], t[quantile_col(0.75)]),
            "total_coverage_95": coverage(t["actual"], t[quantile_col(0.025)], t[quantile_col(0.975)]),
            "total_within_S": float((t["actual"] <= t["S"]).mean()),
            "cycle_service_level": float(self.inventory.loc[POLICIES["forecast"], "cycle_service_level"]),
            "target_service_level": target,
        }

    def table(self) -> pd.DataFrame:
        """One row per model: metrics averaged over origins, seconds summed."""
        g = self.per_origin.groupby("model", sort=False)
        table = g[METRICS].mean().join(g["seconds"].sum())
        table.index.name = "model"
        return table

    def inventory_metrics(self) -> dict[str, float]:
        """The inventory table as flat MLflow metrics, `inventory.<policy's first word>.<measure>`."""
        return {
            f"inventory.{policy.split()[0]}.{k}": float(v) for policy, row in self.inventory.iterrows() for k, v in row.items()
        }

    def report(
        self, panel: pd.DataFrame, cfg: Config, title: str, lineage: dict, gate: tuple[pd.DataFrame, list[str]] | None = None
    ) -> str:
        """The HTML evaluation report: metrics against peers, forecast plots, segments, inventory."""
        first = self.per_origin["origin"].min()
        history = panel[panel["ds"] < first]
        quantiles = cfg.evaluation.quantiles
        by_segment = report.error_by_segment(history, self.actuals, self.forecasts, quantiles, report.segments(history))
        notes = [
            f"{self.per_origin['origin'].nunique()} forecast origin(s) of {cfg.features.horizon} days; "
            "metrics are averaged over origins, seconds summed (champion: fit + forecast).",
            "WRMSSE and WSPL weight each series by its units in the 28 days before the origin; "
            "WSPL covers M5's nine quantiles. Lower is better; coverage should match its level.",
            f"Inventory: lead time {cfg.inventory.lead_time} d, review every {cfg.inventory.review_period} d, "
            f"target cycle service level {cfg.inventory.service_level:.0%}, holding "
            f"{cfg.inventory.holding_cost:g} x price per unit-day, lost sale {cfg.inventory.lost_sales_cost:g} x price.",
        ]
        return report.render(
            title=title,
            metrics=self.table(),
            forecasts=self.forecasts[MODEL],
            history=history,
            actuals=self.actuals,
            quantiles=quantiles,
            n_series=cfg.evaluation.report_series,
            seed=cfg.seed,
            per_origin=self.per_origin if self.per_origin["origin"].nunique() > 1 else None,
            by_segment=by_segment,
            inventory=self.inventory,
            on_hand=self.on_hand,
            calibration=self.calibration(cfg.inventory.service_level),
            lineage=lineage,
            gate=gate,
            notes=notes,
        )


def run(panel: pd.DataFrame, cfg: Config, fit_champion: Callable[[pd.DataFrame], Forecaster], peers: Sequence[str]) -> Backtest:
    """Refit the champion at every origin with `fit_champion` and score it, its peers and the policies."""
    results = []
    for start in origins(panel, cfg.features.horizon, cfg.evaluation.origins):
        t0 = time.perf_counter()
        forecaster = fit_champion(panel[panel["ds"] < start])
        results.append(evaluate_origin(panel, start, forecaster, cfg, peers, fit_seconds=time.perf_counter() - t0))
    return Backtest.from_origins(results)


def window(panel: pd.DataFrame, start: pd.Timestamp, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The days before `start` and the `horizon` days from it, of the series scored there: those with at
    least one horizon of history, so every peer has enough to fit on."""
    first = panel.groupby("unique_id")["ds"].min()
    scored = first.index[first <= start - pd.Timedelta(days=horizon)]
    fit = panel[(panel["ds"] < start) & panel["unique_id"].isin(scored)]
    test = panel[(panel["ds"] >= start) & (panel["ds"] < start + pd.Timedelta(days=horizon)) & panel["unique_id"].isin(scored)]
    return fit, test


def evaluate_origin(
    panel: pd.DataFrame, start: pd.Timestamp, forecaster: Forecaster, cfg: Config, peers: Sequence[str], fit_seconds: float = 0.0
) -> Origin:
    """Score a forecaster whose history ends the day before `start`, each peer, and the policies."""
    h, quantiles = cfg.features.horizon, cfg.evaluation.quantiles
    fit, test = window(panel, start, h)
    log.info("origin %s: %d series", start.date(), test["unique_id"].nunique())
    t0 = time.perf_counter()
    fc = forecaster.predict(None, h, quantiles, future=test)
    fc = fc[fc["unique_id"].isin(test["unique_id"].unique())]
    results = {MODEL: (fc, fit_seconds + time.perf_counter() - t0)}
    for name in peers:
        t0 = time.perf_counter()
        peer = forecast_peers(
            fit,
            h,
            quantiles,
            season_length=cfg.evaluation.season_length,
            models=[name],
            n_jobs=cfg.evaluation.n_jobs,
            seed=cfg.seed,
        )[name]
        results[name] = (peer, time.perf_counter() - t0)
    actuals, scores = Actuals(fit, test), []
    for name, (frame, seconds) in results.items():
        s = actuals.evaluate(frame, quantiles)
        scores.append({"origin": start, "model": name, **{m: s[m] for m in METRICS}, "seconds": seconds})
    log.info("origin %s\n%s", start.date(), pd.DataFrame(scores).set_index("model")[METRICS].round(3).to_string())
    forecasts = {name: frame for name, (frame, _) in results.items()}
    sims, totals = simulate_policies(panel, fit, test, forecaster, cfg)
    return Origin(start, scores, forecasts, test, sims, totals, series_units(actuals, forecasts, sims))


def series_units(actuals: Actuals, forecasts: dict[str, pd.DataFrame], sims: dict[str, sim.Simulation]) -> pd.DataFrame:
    """Per series at one origin: the champion recipe's weight, RMSSE and 95% coverage, each peer's
    `<peer>.rmsse` and `<peer>.coverage_95`, and each policy's `<policy>.total_cost` and `<policy>.cycle_service_level`
    (simulations run over the sorted series)."""
    out = actuals.series_scores(forecasts[MODEL])
    for name, frame in forecasts.items():
        if name != MODEL:
            scores = actuals.series_scores(frame)
            out[f"{name}.rmsse"], out[f"{name}.coverage_95"] = scores["rmsse"], scores["coverage_95"]
    for name, run in sims.items():
        per = run.per_series()[["total_cost", "cycle_service_level"]].set_axis(actuals.ids).add_prefix(f"{name}.")
        out = out.join(per)
    return out


@dataclass(frozen=True, eq=False)
class Reviews:
    """What every policy of one test window sees: per series (`ids`) the actual demand, the history the
    classical policy reads, prices, and at each review the forecaster's sample paths of the next L + R
    days with the forecast policy's order-up-to level S read from them."""

    ids: list[str]
    demand: np.ndarray  # (n, horizon) actual
    ahead: np.ndarray  # (n, horizon + L + R) actual, truncated at the data's end: the oracle's view
    history: np.ndarray  # (n, inventory.ma_window) before the window
    price: np.ndarray  # (n,)
    paths: np.ndarray  # (n, reviews, samples, L + R)
    levels: np.ndarray  # (n, reviews) the forecast policy's S
    totals: pd.DataFrame  # per series and review: the actual L + R total beside S and the paths' quantiles of it


def reviews(panel: pd.DataFrame, fit: pd.DataFrame, test: pd.DataFrame, forecaster: Forecaster, cfg: Config) -> Reviews:
    """The test days' reviews as /replenish answers them: at each review the forecaster conditions on
    every actual day so far and draws paths of demand over the next lead time + review period."""
    inv = cfg.inventory
    L, R, horizon = inv.lead_time, inv.review_period, cfg.features.horizon
    cover = L + R
    ids = sorted(test["unique_id"].unique())
    start = test["ds"].min()
    days = pd.date_range(start, periods=horizon + cover)

    def wide(frame: pd.DataFrame, dates) -> np.ndarray:
        return frame.pivot(index="unique_id", columns="ds", values="y").reindex(index=ids, columns=dates).fillna(0.0).to_numpy()

    ahead = wide(panel[panel["ds"].isin(days) & panel["unique_id"].isin(ids)], days)  # truncated at the data's end
    window = inv.ma_window
    history = wide(
        fit[fit["ds"] >= start - pd.Timedelta(days=window)], pd.date_range(start - pd.Timedelta(days=window), periods=window)
    )
    price = fit.groupby("unique_id")["price"].last().reindex(ids).fillna(1.0).to_numpy()
    review_days = sim.review_days(horizon, R)
    paths = np.empty((len(ids), len(review_days), inv.num_sample_paths, cover), np.float32)  # filled, not stacked: no copy
    levels, totals = [], []
    level = forecaster.order_level(inv.service_level)
    # The window a forecast may condition on: promotion and event flags are planned, so known ahead.
    known = panel[panel["ds"].isin(days) & panel["unique_id"].isin(ids)]
    for k, d in enumerate(review_days):
        anchored = forecaster.with_history(panel[(panel["ds"] < start + pd.Timedelta(days=int(d)))])
        paths[:, k] = anchored.sample(ids, cover, inv.num_sample_paths, seed=cfg.seed + int(d), future=known)
        levels.append(sim.sample_path_levels(paths[:, k], level))
        if start + pd.Timedelta(days=int(d) + cover - 1) <= panel["ds"].max():  # windows the data covers in full
            window = paths[:, k].sum(axis=2)
            q = {quantile_col(lv): np.quantile(window, forecaster.order_level(lv), axis=1) for lv in (0.025, 0.25, 0.75, 0.975)}
            totals.append(
                pd.DataFrame({"unique_id": ids, "review": int(d), "actual": ahead[:, d : d + cover].sum(1), "S": levels[-1], **q})
            )
    return Reviews(
        ids,
        ahead[:, :horizon],
        ahead,
        history,
        price,
        paths,
        np.stack(levels, 1),
        pd.concat(totals, ignore_index=True),
    )


def simulate_policies(
    panel: pd.DataFrame, fit: pd.DataFrame, test: pd.DataFrame, forecaster: Forecaster, cfg: Config
) -> tuple[dict[str, sim.Simulation], pd.DataFrame]:
    """Replay the test days under each policy (`reviews`). Also returns, per series and review, the actual
    total over that window beside the paths' quantiles of it and S: whether decisions fail in the
    forecast of totals or in the replay is read off these."""
    r = reviews(panel, fit, test, forecaster, cfg)
    return policy_simulations(r, cfg), r.totals


def policy_simulations(r: Reviews, cfg: Config) -> dict[str, sim.Simulation]:
    """The forecast policy, the classical one and perfect foresight, replayed on the actual demand."""
    inv = cfg.inventory
    L, R, horizon = inv.lead_time, inv.review_period, r.demand.shape[1]
    policy_levels = {
        "forecast": sim.expand_levels(r.levels, horizon, R),
        "classical": sim.moving_average_levels(r.history, r.demand, L, R, inv.service_level, window=inv.ma_window),
        "perfect": sim.perfect_foresight_levels(r.ahead, L, R)[:, :horizon],
    }
    return {
        name: sim.simulate(r.demand, lv, L, R, r.price, inv.holding_cost, inv.lost_sales_cost)
        for name, lv in policy_levels.items()
    }


def pool(runs: list[sim.Simulation]) -> dict[str, float]:
    """One policy's summary over several windows: every series-cycle and unit counts once."""
    stats = [r.summary() for r in runs]
    out = {
        "cycle_service_level": float(
            np.average([s["cycle_service_level"] for s in stats], weights=[r.cycle_stockouts().size for r in runs])
        ),
        "fill_rate": float(sum(r.sales.sum() for r in runs) / max(sum(r.demand.sum() for r in runs), 1e-9)),
        "avg_on_hand": float(np.average([s["avg_on_hand"] for s in stats], weights=[r.on_hand.size for r in runs])),
        "holding_cost": sum(s["holding_cost"] for s in stats),
        "lost_sales_cost": sum(s["lost_sales_cost"] for s in stats),
    }
    return {**out, "total_cost": out["holding_cost"] + out["lost_sales_cost"]}


def _pool(sims: list[dict[str, sim.Simulation]], starts: list[pd.Timestamp]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Summaries pooled over origins (every series-cycle and unit counts once) and the on-hand timeline."""
    summary, on_hand = {}, {}
    for key, label in POLICIES.items():
        runs = [s[key] for s in sims]
        summary[label] = pool(runs)
        on_hand[label] = np.concatenate([r.daily_on_hand() for r in runs])
    days = pd.DatetimeIndex(
        np.concatenate([pd.date_range(start, periods=r["forecast"].demand.shape[1]) for start, r in zip(starts, sims)]), name="ds"
    )
    table = pd.DataFrame.from_dict(summary, orient="index")
    table.index.name = "policy"
    return table, pd.DataFrame(on_hand, index=days)
