"""Order policies compete like models: the classical policy, base stock on the forecaster's paths, and the
learned policy, judged on the held-out origins' actual demand, paired by series x origin.

The textbook order is the baseline: base stock is served where it meets the service target and its
total cost is significantly below the classical policy's (moving average + normal safety stock), or
where only it meets the target (`textbook`); the learned policy only where it beats the served textbook
policy, and the champion policy, the same way, and meets the service target within `gate.csl_tolerance`.
A serving champion policy is re-judged on every run's evidence and stops deciding when it no longer wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from mlflow.models import MetricThreshold

from supplyml import gate, registry
from supplyml.config import Config
from supplyml.evidence import Comparison
from supplyml.forecasting import Forecaster, backtest
from supplyml.planning import LEARNED

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

SETTING_TAG = "policy"  # a registered version's setting: algorithm, lead time, review period, actions
FIGURES = ("total_cost", "cycle_service_level", "fill_rate", "avg_on_hand", "holding_cost", "lost_sales_cost")
# The simulations' names (backtest.policy_simulations) as /replenish names the policy that decided.
SERVED = {"forecast": "base_stock", "classical": "classical"}
CLAIM = (
    gate.Metric("total_cost", "total_cost", greater_is_better=False, pooled="sum"),
    gate.Metric("cycle_service_level", "cycle_service_level", greater_is_better=True, pooled="mean"),
)


def setting(cfg: Config) -> dict:
    return {
        "algorithm": cfg.policy.algorithm,
        "lead_time": cfg.inventory.lead_time,
        "review_period": cfg.inventory.review_period,
        "n_actions": cfg.policy.n_actions,
    }


def evidence(cfg: Config, panel: pd.DataFrame, starts: list[pd.Timestamp], forecaster: Forecaster) -> Iterator[backtest.Reviews]:
    """The reviews of the horizon from each origin in `starts`, with `forecaster`'s paths re-anchored there
    (it must have been fitted before the first), one origin at a time."""
    for start in starts:
        fit, test = backtest.window(panel, start, cfg.features.horizon)
        yield backtest.reviews(panel, fit, test, forecaster.with_history(panel[panel["ds"] < start]), cfg)


def _policy_units(units: pd.DataFrame, name: str) -> pd.DataFrame:
    cols = {f"{name}.{m.column}": m.column for m in CLAIM}
    return units[["unique_id", "origin", *cols]].rename(columns=cols)


def versus(cfg: Config, units: pd.DataFrame, ours: str, theirs: str) -> tuple[bool, list[str], list[dict]]:
    """Policy `ours` against `theirs` on per series x origin units (columns `<policy>.total_cost` and
    `<policy>.cycle_service_level`): significantly cheaper, service not significantly worse."""
    comparisons = gate.paired(_policy_units(units, ours), _policy_units(units, theirs), CLAIM, cfg.gate, cfg.seed)
    won, reasons = gate.significance(comparisons, cfg.gate.alpha, against=theirs)
    return won, [f"{ours}: {r}" for r in reasons], [c.to_dict() for c in comparisons]


def service(cfg: Config, units: pd.DataFrame, name: str) -> Comparison:
    """Policy `name`'s cycle service level against the bar `inventory.service_level - gate.csl_tolerance`,
    per series x origin: `worse` means significantly short of the target."""
    bar = cfg.inventory.service_level - cfg.gate.csl_tolerance
    return gate.against_bar(units, f"{name}.cycle_service_level", bar, cfg, name=f"{name} cycle_service_level")


def textbook(cfg: Config, units: pd.DataFrame) -> dict:
    """Which textbook policy /replenish serves, by total cost at the service target on the held-out
    origins (`units`: `Backtest.units`). A policy significantly short of the target (less the tolerance)
    does not qualify while the other does. Where both qualify, base stock serves if significantly cheaper
    than the classical policy: a service level above the target is no merit. Where both fall short, it
    must also serve not significantly worse. Otherwise the classical policy stays."""
    alpha = cfg.gate.alpha
    won, reasons, comparisons = versus(cfg, units, "forecast", "classical")
    bars = {name: service(cfg, units, name) for name in ("forecast", "classical")}
    short = {name: c.worse(alpha) for name, c in bars.items()}
    if short["forecast"] != short["classical"]:
        served = "classical" if short["forecast"] else "forecast"
        reasons = [
            f"{n}: {'FAILED' if short[n] else 'passed'}: service {'significantly' if short[n] else 'not'} "
            f"short of the target: {c.describe('the bar')}"
            for n, c in bars.items()
        ]
    else:
        if short["forecast"]:  # both short: cheaper with service not worse (`versus`)
            reasons = ["both policies serve short of the target", *reasons]
        else:  # both at the target: cheaper is enough
            won, reasons = comparisons[0]["p_better"] < alpha, ["both policies serve at the target", reasons[0]]
        served = "forecast" if won else "classical"
    return {
        "served": SERVED[served],
        "simulation": served,
        "reasons": reasons,
        "evidence": [*comparisons, *(c.to_dict() for c in bars.values())],
    }


class Verdict(gate.Verdict):
    shown = None


def judge(cfg: Config, reviews: Iterable[backtest.Reviews], model: BaseAlgorithm) -> tuple[Verdict, pd.DataFrame, dict]:
    """The gate on the origins' actual demand: the learned policy against the served textbook policy and
    the champion policy, and the champion re-judged against the textbook. Returns the verdict, every
    policy's summary pooled over origins (the evaluation table) and the champion's re-judgement. `reviews`
    (one per origin) is read once, so it may stream from disk."""
    from supplyml.replenishing import real

    current = registry.champion_version(cfg.registry.policy_name)
    models = {LEARNED: model}
    if current is not None and json.loads(current.tags[SETTING_TAG]) == setting(cfg):
        models["champion"] = registry.load_policy(cfg.registry.policy_name).policy
    sims, units = [], []
    for i, r in enumerate(reviews):  # one origin at a time: its paths are the step's largest array
        sims.append({**backtest.policy_simulations(r, cfg), **{n: real.replay(m, r, cfg) for n, m in models.items()}})
        per = [s.per_series()[["total_cost", "cycle_service_level"]].add_prefix(f"{name}.") for name, s in sims[-1].items()]
        units.append(pd.concat(per, axis=1).assign(unique_id=r.ids, origin=i))
        del r  # before the next origin is read
    table = pd.DataFrame({name: backtest.pool([s[name] for s in sims]) for name in sims[0]}).T
    units = pd.concat(units, ignore_index=True)
    base = textbook(cfg, units)
    ours = {k: float(table.loc[LEARNED, k]) for k in FIGURES}
    ours["cost_vs_textbook"] = ours["total_cost"] / float(table.loc[base["simulation"], "total_cost"]) - 1
    ours["csl_shortfall"] = max(0.0, cfg.inventory.service_level - ours["cycle_service_level"])
    promote, reasons = gate.check(
        [
            gate.Rule(
                f"cycle service level at most {cfg.gate.csl_tolerance:.2f} below the target",
                "csl_shortfall",
                MetricThreshold(threshold=cfg.gate.csl_tolerance, greater_is_better=False),
                False,
            )
        ],
        ours,
        None,
    )
    won, why, comparisons = versus(cfg, units, LEARNED, base["simulation"])
    promote, reasons, evidence = promote and won, [*reasons, *why], comparisons
    champion, rejudged = None, {"retire": False, "reasons": []}
    if "champion" in models:
        champion = {k: float(table.loc["champion", k]) for k in FIGURES}
        won, why, comparisons = versus(cfg, units, LEARNED, "champion")
        promote, reasons, evidence = promote and won, [*reasons, *why], [*evidence, *comparisons]
        kept, why, comparisons = versus(cfg, units, "champion", base["simulation"])
        rejudged = {"retire": not kept, "version": str(current.version), "reasons": why, "evidence": comparisons}
    verdict = Verdict(promote, reasons, ours, champion, str(current.version) if current else None, evidence)
    return verdict, table, {**rejudged, "textbook": base}


def concat(reviews: Iterable[backtest.Reviews], series: int | None = None) -> backtest.Reviews:
    """Several origins' reviews (`series` series in all) as one set of series (`<id>@<origin>`), to train one
    policy on all their paths. The paths are copied into one array as the origins stream past, so a stream
    (`series` given) holds them once, not twice."""
    if series is None:
        reviews = list(reviews)
        series = sum(len(r.ids) for r in reviews)
    paths, row = None, 0
    small: dict[str, list] = {f: [] for f in ("demand", "ahead", "history", "price", "levels", "totals")}
    ids = []
    for i, r in enumerate(reviews):
        if paths is None:
            paths = np.empty((series, *r.paths.shape[1:]), r.paths.dtype)
        if row + len(r.ids) > series:
            raise ValueError(f"the origins hold more than the {series} series expected")
        paths[row : row + len(r.ids)] = r.paths
        row += len(r.ids)
        ids += [f"{s}@{i}" for s in r.ids]
        for f, parts in small.items():
            parts.append(getattr(r, f))
        del r  # its paths are copied: free them before the next origin is read
    if paths is None or row != series:
        raise ValueError(f"the origins hold {row} series, not the {series} expected")
    totals = pd.concat(small.pop("totals"), ignore_index=True)
    return backtest.Reviews(ids=ids, totals=totals, paths=paths, **{f: np.concatenate(p) for f, p in small.items()})
