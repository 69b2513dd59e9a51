"""The paired test every gate uses, against hand computations on tiny examples, and the rule built on it."""

import numpy as np
import pandas as pd
import pytest

from supplyml import gate
from supplyml.config import GateConfig, load_config
from supplyml.evidence import compare
from supplyml.replenishing.lifecycle import textbook, versus

# Three series at two origins with known RMSSEs and WRMSSE weights (each origin's weights sum to 1).
HAND = pd.DataFrame(
    {
        "block": ["A", "B", "C", "A", "B", "C"],
        "origin": [1, 1, 1, 2, 2, 2],
        "weight": [0.5, 0.3, 0.2, 0.6, 0.3, 0.1],
        "challenger": [1.0, 0.9, 1.0, 0.8, 1.1, 1.0],
        "champion": [1.2, 1.0, 1.1, 1.0, 1.0, 1.5],
    }
)


def test_the_statistic_matches_a_hand_computation():
    c = compare("wrmsse", HAND, greater_is_better=False, pooled="mean")
    # WRMSSE per origin: challenger 0.5 + 0.27 + 0.2 = 0.97 and 0.48 + 0.33 + 0.1 = 0.91; champion 0.6 + 0.3
    # + 0.22 = 1.12 and 0.6 + 0.3 + 0.15 = 1.05. Averaged over the two origins: 0.94 against 1.085.
    assert [o["challenger"] for o in c.per_origin] == pytest.approx([0.97, 0.91])
    assert [o["champion"] for o in c.per_origin] == pytest.approx([1.12, 1.05])
    assert (c.challenger, c.champion, c.difference) == pytest.approx((0.94, 1.085, -0.145))
    # Block differences (weighted, halved for the mean over origins): A (-0.1 - 0.12) / 2 = -0.11,
    # B (-0.03 + 0.03) / 2 = 0, C (-0.02 - 0.05) / 2 = -0.035. Of the 8 sign flips, the sum is <= -0.145
    # for 2 (A and C negative, B either way), and >= -0.145 for all 8: exact one-sided p-values.
    assert c.p_better == pytest.approx(2 / 8) and c.p_worse == pytest.approx(1.0)
    assert (c.blocks, c.units) == (3, 6)
    # Three series can never show significance at 5%: the smallest p-value 3 blocks allow is 1/8.
    assert not c.better(0.05)


def test_a_margin_asks_for_more_than_a_fraction_of_the_champions_figure():
    c = compare("wrmsse", HAND, greater_is_better=False, pooled="mean", margin=0.1)
    # Better by more than 10%: blocks' challenger - 0.9 x champion: A 0.49 - 0.54 = -0.05, B 0.3 - 0.27 =
    # +0.03, C 0.15 - 0.1665 = -0.0165; sum -0.0365. Sign flips with a sum <= -0.0365: (-,+,-), (-,-,-),
    # (-,-,+): 3 of 8.
    assert c.p_better == pytest.approx(3 / 8) and c.margin == 0.1
    assert c.difference == pytest.approx(-0.145)  # the interval and difference are of the plain difference


def test_a_sum_pools_every_unit_and_blocks_keep_a_series_together():
    frame = HAND.drop(columns="weight")
    c = compare("total_cost", frame, greater_is_better=False, pooled="sum")
    assert c.challenger == pytest.approx(5.8) and c.champion == pytest.approx(6.8)
    # Blocks -0.4, 0, -0.6: sums <= -1 for 2 of 8 flips.
    assert c.p_better == pytest.approx(2 / 8)


def test_beyond_the_exact_regime_the_p_value_is_the_sign_flip_tests_within_its_monte_carlo_error():
    # 16 blocks have 2^16 = 65,536 sign patterns, more than the 9,999 resamples: the Monte Carlo path. Its
    # exact p-value, counted over every pattern here: the share of sums at or below the observed one.
    d = np.array([-3.0, 1.0, -2.0, -0.5, 2.5, -1.5, 0.5, -4.0, 1.0, -1.0, 2.0, -2.5, -0.5, 1.5, -3.5, 0.5])
    signs = 1 - 2 * ((np.arange(2**16)[:, None] >> np.arange(16)) & 1)
    exact = float(np.mean((signs * np.abs(d)).sum(axis=1) <= d.sum()))
    frame = pd.DataFrame({"block": range(16), "origin": 0, "challenger": d, "champion": 0.0})
    c = compare("total_cost", frame, greater_is_better=False)
    assert exact == pytest.approx(0.1398, abs=1e-4)  # 9,160 of 65,536 patterns
    assert c.p_better == pytest.approx(exact, abs=3 * np.sqrt(exact * (1 - exact) / 9999))


def test_the_same_figures_are_no_difference():
    same = HAND.assign(champion=HAND["challenger"])
    c = compare("wrmsse", same, greater_is_better=False, pooled="mean")
    assert c.difference == 0 and (c.low, c.high) == (0, 0) and c.p_better == 1 and c.p_worse == 1
    promote, reasons = gate.significance([c], alpha=0.05)
    assert not promote and reasons[0].startswith("FAILED: no significant difference in wrmsse")


def _series(n: int, origins: int, effect: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """n series x origins units: champion costs ~ 100 +- 10, challenger = champion x (1 + effect[origin]) + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for o in range(origins):
        base = rng.normal(100, 10, n)
        rows.append(
            pd.DataFrame(
                {
                    "block": [f"S{i}" for i in range(n)],
                    "origin": o,
                    "champion": base,
                    "challenger": base * (1 + effect[o]) + rng.normal(0, 1, n),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_a_clear_improvement_is_significant_and_its_interval_excludes_zero():
    c = compare("total_cost", _series(40, 3, np.array([-0.05, -0.05, -0.05])), greater_is_better=False)
    assert c.better(0.05) and not c.worse(0.05)
    assert c.high < 0 and c.low < c.difference < c.high
    # 40 blocks, all negative: the Monte Carlo p-value is at its floor, 1 / (resamples + 1).
    assert c.p_better == pytest.approx(1 / 10000)


def test_a_guard_significantly_worse_blocks_a_significant_win():
    win = compare("wrmsse", _series(40, 2, np.array([-0.05, -0.05])), greater_is_better=False)
    worse_guard = compare("cycle_service_level", _series(40, 2, np.array([-0.05, -0.05]), seed=1), greater_is_better=True)
    flat_guard = compare("cycle_service_level", _series(40, 2, np.array([0.0, 0.0]), seed=2), greater_is_better=True)
    assert gate.significance([win, flat_guard], 0.05)[0]
    promote, reasons = gate.significance([win, worse_guard], 0.05)
    assert not promote and reasons[1].startswith("FAILED: guard cycle_service_level significantly worse")


def _policy_units(
    n: int, effect: list[float], against: str = "forecast", ours: str = "learned", csl: tuple[float, float] = (0.95, 0.95)
) -> pd.DataFrame:
    units = _series(n, len(effect), np.array(effect))
    return pd.DataFrame(
        {
            "unique_id": units["block"],
            "origin": units["origin"],
            f"{ours}.total_cost": units["challenger"],
            f"{against}.total_cost": units["champion"],
            f"{ours}.cycle_service_level": csl[0],
            f"{against}.cycle_service_level": csl[1],
        }
    )


CFG = load_config()


def test_a_policy_that_wins_one_window_and_loses_two_is_not_promoted():
    # 10% cheaper on the first origin's reviews, 5% dearer on the next two: no gain over the three.
    won, reasons, _ = versus(CFG, _policy_units(60, [-0.10, 0.05, 0.05]), "learned", "forecast")
    assert not won and "learned: FAILED" in reasons[0]
    # The same policy winning at every origin is promoted: the test sees both verdicts.
    won, reasons, _ = versus(CFG, _policy_units(60, [-0.10, -0.10, -0.10]), "learned", "forecast")
    assert won and reasons[0].startswith("learned: passed")


def test_base_stock_is_served_only_where_it_beats_the_classical_policy():
    cheaper = _policy_units(60, [-0.2, -0.2, -0.2], against="classical", ours="forecast")
    assert textbook(CFG, cheaper)["served"] == "base_stock"
    dearer = _policy_units(60, [0.2, 0.2, 0.2], against="classical", ours="forecast")
    assert textbook(CFG, dearer)["served"] == "classical"
    tie = _policy_units(60, [0.0, 0.0, 0.0], against="classical", ours="forecast")
    assert textbook(CFG, tie)["served"] == "classical"  # not significantly cheaper: the textbook stays


def _served(effect: float, csl: tuple[float, float]) -> str:
    """The textbook choice where base stock's cost is the classical policy's x (1 + effect), at constant
    service levels (base stock's, the classical policy's) on 60 series x 3 origins."""
    return textbook(CFG, _policy_units(60, [effect] * 3, against="classical", ours="forecast", csl=csl))["served"]


def test_the_textbook_choice_is_made_by_cost_at_the_service_target():
    # The bar is the 0.95 target less gate.csl_tolerance 0.03: 0.92. Every unit above or below it.
    assert (CFG.inventory.service_level, CFG.gate.csl_tolerance) == (0.95, 0.03)
    # Both serve at the target: cheaper wins, and the classical policy's over-service is no merit.
    assert _served(-0.2, (0.94, 0.99)) == "base_stock"
    assert _served(+0.2, (0.99, 0.94)) == "classical"
    # Only one serves at the target: it is served, whatever the other saves by serving less.
    assert _served(+0.2, (0.95, 0.85)) == "base_stock"
    assert _served(-0.2, (0.85, 0.95)) == "classical"
    # Both fall short: cheaper with service not worse, as between two models.
    assert _served(-0.2, (0.85, 0.85)) == "base_stock"
    assert _served(-0.2, (0.80, 0.85)) == "classical"
    decision = textbook(CFG, _policy_units(60, [0.2] * 3, against="classical", ours="forecast", csl=(0.95, 0.85)))
    assert decision["reasons"][1].startswith("classical: FAILED: service significantly short of the target")
    assert decision["evidence"][3]["champion"] == pytest.approx(0.92)  # the bar, as each origin's mean


def test_paired_joins_on_series_and_origin_and_drops_units_without_a_figure():
    ours = pd.DataFrame({"unique_id": ["a", "b", "c"], "origin": 0, "rmsse": [1.0, np.nan, 2.0], "weight": [0.5, 0, 0.5]})
    theirs = pd.DataFrame({"unique_id": ["c", "a", "z"], "origin": 0, "rmsse": [3.0, 1.0, 9.0], "weight": [0.5, 0.5, 0]})
    (c,) = gate.paired(ours, theirs, [gate.PRIMARY], GateConfig(), seed=0)
    assert c.units == 2 and c.challenger == pytest.approx(1.5) and c.champion == pytest.approx(2.0)
