"""The promotion gate: a challenger against the champion on the same evidence, by MLflow's own rules.

Both models are anchored on the same history (the days before the held-out origin, the series both
know) and scored on the same days: forecast error (WRMSSE, WSPL, interval coverage) and the decisions
each drives in the replenishment simulation (cycle service level, on-hand, total cost). The rule is
config (`gate.*`), written as `mlflow.models.MetricThreshold`s and checked by
`mlflow.validate_evaluation_results`, one rule at a time so the verdict says which rule decided.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import ClassVar

import mlflow
import pandas as pd
from mlflow.models import EvaluationResult, MetricThreshold
from mlflow.models.evaluation.validation import ModelValidationFailedException

from supplyml import backtest
from supplyml.config import Config, GateConfig
from supplyml.forecasting import Forecaster

log = logging.getLogger(__name__)
FIGURES = ["wrmsse", "wspl", "coverage_50", "coverage_95", "total_coverage_95", "cycle_service_level",
           "avg_on_hand", "total_cost"]


def score(panel: pd.DataFrame, start: pd.Timestamp, forecaster: Forecaster, cfg: Config) -> dict[str, float]:
    """Forecast and decision figures of `forecaster` anchored on `panel` before `start`, on the horizon after it."""
    forecaster = forecaster.with_history(panel[panel["ds"] < start])
    return figures(backtest.Backtest.from_origins([backtest.evaluate_origin(panel, start, forecaster, cfg, peers=[])]),
                   cfg)


def figures(result: backtest.Backtest, cfg: Config) -> dict[str, float]:
    """The gate's figures of the champion recipe (`backtest.MODEL`) in a backtest."""
    out = {**result.table().loc[backtest.MODEL].to_dict(),
           **result.inventory.loc[backtest.POLICIES["forecast"]].to_dict(),
           **result.calibration(cfg.inventory.service_level)}
    out["csl_gap"] = abs(out["cycle_service_level"] - cfg.inventory.service_level)
    return {k: float(out[k]) for k in [*FIGURES, "csl_gap"]}


def compare(panel: pd.DataFrame, start: pd.Timestamp, challenger: Forecaster, champion: Forecaster,
            cfg: Config) -> dict[str, dict[str, float]]:
    """Both models' figures on the same origin and the series both know; the champion is re-anchored
    on the challenger's history, so only the fitted parameters differ."""
    common = sorted(set(challenger.skus) & set(champion.skus))
    if not common:
        raise ValueError("the challenger and the champion share no series: they cannot be compared")
    panel = panel[panel["unique_id"].isin(common)]
    log.info("champion vs challenger on %d series from %s", len(common), start.date())
    return {"challenger": score(panel, start, challenger, cfg), "champion": score(panel, start, champion, cfg)}


@dataclass
class Rule:
    name: str
    metric: str
    threshold: MetricThreshold
    against_champion: bool

    def describe(self) -> str:
        return f"{self.name}: {self.threshold}"


def rules(cfg: GateConfig, selection: dict | None) -> list[Rule]:
    """The promotion rule from config. Absolute bars first, then the comparisons with a champion."""
    out = [Rule("held-out WRMSSE within gate.max_wrmsse", "wrmsse",
                MetricThreshold(threshold=cfg.max_wrmsse, greater_is_better=False), False)]
    if cfg.must_match_best_peer and selection:
        out.append(Rule("validation WRMSSE no worse than the best single peer's", "validation_gap_to_best_peer",
                        MetricThreshold(threshold=0.0, greater_is_better=False), False))
    out += [
        # MetricThreshold's changes demand an improvement; "at most x% worse" is a threshold on the ratio.
        Rule(f"WRMSSE at most {cfg.max_wrmsse_regression:.0%} worse than the champion's", "wrmsse_regression",
             MetricThreshold(threshold=cfg.max_wrmsse_regression, greater_is_better=False), True),
        Rule(f"total inventory cost at least {cfg.min_cost_improvement:.0%} lower than the champion's", "total_cost",
             MetricThreshold(min_relative_change=float(cfg.min_cost_improvement), greater_is_better=False), True),
        Rule(f"cycle service level within {cfg.csl_tolerance:.2f} of the target", "csl_gap",
             MetricThreshold(threshold=cfg.csl_tolerance, greater_is_better=False), True),
    ]
    return out


@dataclass
class Verdict:
    promote: bool
    reasons: list[str]  # one line per rule: passed, or why not
    challenger: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None  # the champion judged against: promotion requires it still holds the alias
    shown: ClassVar[tuple[str, ...] | None] = tuple(FIGURES)  # the figures table() shows; None: all

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> pd.DataFrame:
        """Both models' figures side by side."""
        cols = {"challenger": self.challenger}
        if self.champion is not None:
            cols[f"champion (v{self.champion_version})"] = self.champion
        table = pd.DataFrame(cols)
        return table if self.shown is None else table.loc[[k for k in self.challenger if k in self.shown]]

    def summary(self) -> str:
        head = "PROMOTE" if self.promote else "KEEP the champion" if self.champion else "REJECT"
        return f"gate: {head}\n" + "\n".join(f"  - {r}" for r in self.reasons)


def decide(figures: dict[str, float], champion: dict[str, float] | None, cfg: GateConfig,
           selection: dict | None = None, champion_version: str | None = None) -> Verdict:
    """Judge `figures` (from `score`) against the champion's on the same origin; without a champion
    only the absolute bars apply."""
    candidate = {**figures, "validation_gap_to_best_peer": _gap_to_best_peer(selection)}
    if champion is not None:
        candidate["wrmsse_regression"] = figures["wrmsse"] / champion["wrmsse"] - 1
    promote, reasons = check(rules(cfg, selection), candidate, champion)
    return Verdict(promote, reasons, figures, champion, champion_version)


def check(rules: list[Rule], candidate: dict[str, float], champion: dict[str, float] | None) -> tuple[bool, list[str]]:
    """Every rule on `candidate` (and the champion's figures, for rules against it; skipped without
    one): whether all passed, and one line per rule. Any model family's gate is a list of rules."""
    reasons, promote = [], True
    for rule in rules:
        if rule.against_champion and champion is None:
            continue
        try:
            relative = rule.threshold.min_relative_change is not None or rule.threshold.min_absolute_change is not None
            mlflow.validate_evaluation_results({rule.metric: rule.threshold}, EvaluationResult(candidate, {}),
                                               EvaluationResult(champion, {}) if relative else None)
            reasons.append(f"passed: {rule.name} ({_figure(rule, candidate, champion)})")
        except ModelValidationFailedException:
            promote = False
            reasons.append(f"FAILED: {rule.name} ({_figure(rule, candidate, champion)})")
    return promote, reasons


def _gap_to_best_peer(selection: dict | None) -> float:
    """Chosen model's validation WRMSSE minus the best single peer's (<= 0: at least as good)."""
    if not selection:
        return 0.0
    scores = selection["validation"]
    singles = [n for n in selection["peers"] if n in scores]
    if not singles:
        return 0.0
    return scores[selection["chosen"]]["wrmsse"] - min(scores[n]["wrmsse"] for n in singles)


def _figure(rule: Rule, candidate: dict, champion: dict | None) -> str:
    value = f"{rule.metric} {candidate[rule.metric]:.4g}"
    if rule.against_champion and champion is not None and rule.metric in champion:
        value += f" vs champion {champion[rule.metric]:.4g}"
    return value
