"""The learned policy's gate on a real MLflow store: against base stock and a champion policy, replayed on
the same reviews' actual demand."""
import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from supplyml import registry
from supplyml.backtest import Reviews, policy_simulations
from supplyml.config import load_config
from supplyml.replenishing import lifecycle, real
from supplyml.tracking import log_policy, setup_tracking

L, R, REVIEWS, SERIES, SAMPLES = 3, 7, 2, 4, 200


@pytest.fixture
def cfg(tmp_path):
    return load_config(overrides=[f"registry.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
                                  f"registry.artifact_location={tmp_path}/mlartifacts", "policy.timesteps=2000",
                                  "features.horizon=14"])


@pytest.fixture
def reviews():
    """Four series of Poisson demand (means 1, 2, 4, 8 a day) over two weekly reviews, and paths of it."""
    rng = np.random.default_rng(0)
    means = np.array([1.0, 2.0, 4.0, 8.0])
    paths = rng.poisson(means[:, None, None, None], (SERIES, REVIEWS, SAMPLES, L + R)).astype(float)
    demand = rng.poisson(means[:, None], (SERIES, REVIEWS * R)).astype(float)
    ahead = np.concatenate([demand, rng.poisson(means[:, None], (SERIES, L + R)).astype(float)], axis=1)
    levels = np.quantile(paths.sum(axis=3), 0.95, axis=2)
    return Reviews([f"S{i}" for i in range(SERIES)], demand, ahead, rng.poisson(means[:, None], (SERIES, 28)).astype(float),
                   np.array([1.0, 2.0, 3.0, 4.0]), paths, levels, pd.DataFrame())


def _register_champion(cfg, model, reviews) -> str:
    setup_tracking(cfg)
    example = pd.DataFrame(real.environment(reviews, cfg, 0).reset()[0][:2]).add_prefix("obs_")
    with mlflow.start_run():
        uri = log_policy(model, lifecycle.setting(cfg), example)
    version = registry.register(uri, cfg.registry.policy_name, {"policy": json.dumps(lifecycle.setting(cfg))})
    mlflow.MlflowClient().set_registered_model_alias(cfg.registry.policy_name, "champion", version.version)
    return str(version.version)


def test_the_gate_compares_with_base_stock_and_the_champion_on_the_same_reviews(cfg, reviews):
    setup_tracking(cfg)
    first = real.fit(reviews, cfg, seed=0)
    verdict, table = lifecycle.judge(cfg, reviews, first)
    # No champion yet: two rules, both against the forecast base stock replayed on the same days.
    base = policy_simulations(reviews, cfg)["forecast"].summary()
    ours = real.replay(first, reviews, cfg).summary()
    assert table.loc["forecast", "total_cost"] == pytest.approx(base["total_cost"])
    assert verdict.challenger["cost_saving"] == pytest.approx(1 - ours["total_cost"] / base["total_cost"])
    assert verdict.champion is None and len(verdict.reasons) == 2

    version = _register_champion(cfg, first, reviews)
    second = real.fit(reviews, cfg, seed=1)
    verdict, table = lifecycle.judge(cfg, reviews, second)
    assert verdict.champion_version == version
    # The champion, loaded from the registry, replayed on the same reviews: the first model's figures.
    assert verdict.champion["total_cost"] == pytest.approx(ours["total_cost"])
    assert table.loc["champion", "total_cost"] == pytest.approx(ours["total_cost"])
    assert len(verdict.reasons) == 3 and "champion policy" in verdict.reasons[2]
    beats = real.replay(second, reviews, cfg).summary()["total_cost"] <= ours["total_cost"]
    assert verdict.reasons[2].startswith("passed" if beats else "FAILED")


def test_a_champion_trained_for_another_setting_is_not_compared(cfg, reviews):
    setup_tracking(cfg)
    _register_champion(cfg, real.fit(reviews, cfg, seed=0), reviews)
    other = cfg.model_copy(update={"policy": cfg.policy.model_copy(update={"n_actions": 21})})  # another action grid
    verdict, _ = lifecycle.judge(other, reviews, real.fit(reviews, other, seed=1))
    assert verdict.champion is None and verdict.champion_version == "1" and len(verdict.reasons) == 2
