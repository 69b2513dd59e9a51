"""A learned policy really learns: PPO from stable-baselines3 on Zipkin's lead-time-1 instance."""

import tempfile

import pytest

from supplyml.config import Config
from supplyml.replenishing import known
from supplyml.replenishing.learned import train

pytestmark = pytest.mark.slow


def test_ppo_learns_a_policy_near_the_optimum_and_better_than_standard_base_stock():
    # Optimum 4.041 and standard base stock 4.390 (Zipkin 2008; tests/test_lost_sales.py). 800k periods on
    # 16 series take ~50 s on one core; seeds 0 and 1 land 2.0% and 2.7% above the optimum. At 400k
    # periods seeds 0-3 spread from 1.2% to 7.0%: too unconverged for a 5% bar.
    system = known.instance(1)
    model = train("ppo", known.environment(system, 16, seed=0), Config().policy.params["ppo"], 800_000, seed=0)
    cost = known.exact_cost(system, model)
    assert cost < 4.39
    assert cost / 4.041 - 1 < 0.05
    # The simulated run on the evaluation stream agrees with the exact figure.
    assert known.simulated_cost(system, known.learned(model), 100_000) == pytest.approx(cost, abs=0.05)


def test_an_unknown_algorithm_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown algorithm 'a2c'; choose one of \\['dqn', 'ppo'\\]"):
        train("a2c", known.environment(known.instance(1), 2, seed=0), {}, 1000, seed=0)


def test_training_leaves_no_logger_folder_behind(tmp_path, monkeypatch):
    # SB3's default logger makes an empty tempdir/SB3-<time> folder per fit and never removes it.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    train("dqn", known.environment(known.instance(1), 2, seed=0), {}, 200, seed=0)
    assert list(tmp_path.iterdir()) == []
