"""The learned policy through the lifecycle: trained on the forecaster's sample paths at the test
window's reviews, judged on that window's actual demand against the forecast base-stock policy (and
the champion policy, replayed on the same reviews), registered with its verdict.

The gate is on decisions, not on rewards: total cost at least `gate.min_cost_improvement` below base
stock's and the champion's, with the cycle service level no more than `gate.csl_tolerance` below
`inventory.service_level`. Only a policy that passed it is served, and only then does /replenish
default to it.
"""
from __future__ import annotations

import json

import pandas as pd
from mlflow.models import MetricThreshold
from stable_baselines3.common.base_class import BaseAlgorithm

from supplyml import backtest, gate, registry
from supplyml.config import Config
from supplyml.forecasting import Forecaster
from supplyml.replenishing import real

SETTING_TAG = "policy"  # a registered version's setting: algorithm, lead time, review period, actions
FIGURES = ("total_cost", "cycle_service_level", "fill_rate", "avg_on_hand", "holding_cost", "lost_sales_cost")


def setting(cfg: Config) -> dict:
    return {"algorithm": cfg.policy.algorithm, "lead_time": cfg.inventory.lead_time,
            "review_period": cfg.inventory.review_period, "n_actions": cfg.policy.n_actions}


def evidence(cfg: Config, panel: pd.DataFrame, start: pd.Timestamp, forecaster: Forecaster) -> backtest.Reviews:
    """The reviews of the horizon from `start`, with `forecaster`'s paths (its history ends before `start`)."""
    fit, test = backtest.window(panel, start, cfg.features.horizon)
    return backtest.reviews(panel, fit, test, forecaster, cfg)


def rules(cfg: Config) -> list[gate.Rule]:
    g = cfg.gate
    return [
        gate.Rule(f"total cost at least {g.min_cost_improvement:.0%} below the forecast base stock's", "cost_saving",
                  MetricThreshold(threshold=g.min_cost_improvement, greater_is_better=True), False),
        gate.Rule(f"cycle service level at most {g.csl_tolerance:.2f} below the target", "csl_shortfall",
                  MetricThreshold(threshold=g.csl_tolerance, greater_is_better=False), False),
        gate.Rule(f"total cost at least {g.min_cost_improvement:.0%} below the champion policy's", "total_cost",
                  MetricThreshold(min_relative_change=float(g.min_cost_improvement), greater_is_better=False), True),
    ]


class Verdict(gate.Verdict):
    shown = None


def judge(cfg: Config, r: backtest.Reviews, model: BaseAlgorithm) -> tuple[Verdict, pd.DataFrame]:
    """The gate on the window's actual demand, and every policy's summary there (the evaluation table)."""
    current = registry.champion_version(cfg.registry.policy_name)
    models = {real.LEARNED: model}
    if current is not None and json.loads(current.tags[SETTING_TAG]) == setting(cfg):
        models["champion"] = registry.load_policy(cfg.registry.policy_name).policy
    summaries = real.compare(r, cfg, models)
    table = pd.DataFrame(summaries).T
    ours = {k: float(summaries[real.LEARNED][k]) for k in FIGURES}
    ours["cost_saving"] = 1 - ours["total_cost"] / summaries["forecast"]["total_cost"]
    ours["csl_shortfall"] = max(0.0, cfg.inventory.service_level - ours["cycle_service_level"])
    # A champion trained for another lead time or review period does not decide these reviews: not compared.
    champion = {k: float(summaries["champion"][k]) for k in FIGURES} if "champion" in summaries else None
    promote, reasons = gate.check(rules(cfg), ours, champion)
    return Verdict(promote, reasons, ours, champion, str(current.version) if current else None), table
