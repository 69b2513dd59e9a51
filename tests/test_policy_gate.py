"""The learned policy's gate on a real MLflow store: against the textbook policy and a champion policy,
replayed on the same reviews' actual demand at two origins, paired per series x origin."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from supplyml import planning, registry
from supplyml.config import load_config
from supplyml.forecasting.backtest import Reviews, policy_simulations
from supplyml.replenishing import lifecycle, real
from supplyml.tracking import log_policy, setup_tracking

L, R, REVIEWS, SERIES, SAMPLES = 3, 7, 2, 40, 200


@pytest.fixture
def cfg(tmp_path):
    return load_config(
        overrides=[
            f"registry.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            f"registry.artifact_location={tmp_path}/mlartifacts",
            "policy.timesteps=2000",
            "features.horizon=14",
        ]
    )


def _reviews(seed: int) -> Reviews:
    """Forty series of Poisson demand (means 1 .. 8 a day) over two weekly reviews, and paths of the same law."""
    rng = np.random.default_rng(seed)
    means = np.linspace(1.0, 8.0, SERIES)
    paths = rng.poisson(means[:, None, None, None], (SERIES, REVIEWS, SAMPLES, L + R)).astype(float)
    demand = rng.poisson(means[:, None], (SERIES, REVIEWS * R)).astype(float)
    ahead = np.concatenate([demand, rng.poisson(means[:, None], (SERIES, L + R)).astype(float)], axis=1)
    levels = np.quantile(paths.sum(axis=3), 0.95, axis=2)
    history = rng.poisson(means[:, None], (SERIES, 28)).astype(float)
    return Reviews(
        [f"S{i}" for i in range(SERIES)], demand, ahead, history, np.linspace(1.0, 4.0, SERIES), paths, levels, pd.DataFrame()
    )


@pytest.fixture
def reviews():
    return [_reviews(0), _reviews(1)]  # two held-out origins


def _register_champion(cfg, model, reviews) -> str:
    setup_tracking(cfg)
    example = pd.DataFrame(real.environment(reviews, cfg, 0).reset()[0][:2]).add_prefix("obs_")
    with mlflow.start_run():
        uri = log_policy(model, lifecycle.setting(cfg), example)
    version = registry.register(uri, cfg.registry.policy_name, {"policy": json.dumps(lifecycle.setting(cfg))})
    mlflow.MlflowClient().set_registered_model_alias(cfg.registry.policy_name, "champion", version.version)
    return str(version.version)


def _pooled_cost(runs) -> float:
    return sum(r.summary()["total_cost"] for r in runs)


def test_the_gate_compares_with_the_textbook_policy_at_every_origin(cfg, reviews):
    setup_tracking(cfg)
    first = real.fit(lifecycle.concat(reviews), cfg, seed=0)
    verdict, table, rejudged = lifecycle.judge(cfg, reviews, first)
    # Every policy pooled over both origins: the sum of each origin's own replay.
    base = _pooled_cost([policy_simulations(r, cfg)["forecast"] for r in reviews])
    ours = _pooled_cost([real.replay(first, r, cfg) for r in reviews])
    assert table.loc["forecast", "total_cost"] == pytest.approx(base)
    assert table.loc[planning.LEARNED, "total_cost"] == pytest.approx(ours)
    served = rejudged["textbook"]["simulation"]
    assert verdict.challenger["cost_vs_textbook"] == pytest.approx(ours / table.loc[served, "total_cost"] - 1)
    # No champion: the service bar, then the claim against the served textbook policy and its guard.
    assert verdict.champion is None and len(verdict.reasons) == 3 and not rejudged["retire"]
    # 2,000 periods of training cost more than the textbook policy (replayed above, by hand): no claim holds.
    assert ours > table.loc[served, "total_cost"] and verdict.evidence[0]["p_better"] > 0.05
    assert "learned: FAILED" in verdict.reasons[1] and not verdict.promote
    assert [len(c["per_origin"]) for c in verdict.evidence] == [2, 2]


def test_a_champion_policy_that_loses_to_the_textbook_on_new_evidence_is_retired(cfg, reviews):
    setup_tracking(cfg)
    # 2,000 periods of training: far from the order-up-to levels the paths of the true demand law give.
    weak = real.fit(lifecycle.concat(reviews), cfg, seed=0)
    version = _register_champion(cfg, weak, reviews[0])
    verdict, table, rejudged = lifecycle.judge(cfg, reviews, real.fit(lifecycle.concat(reviews), cfg, seed=1))
    served = rejudged["textbook"]["simulation"]
    champion_cost = _pooled_cost([real.replay(weak, r, cfg) for r in reviews])
    assert verdict.champion["total_cost"] == pytest.approx(champion_cost) and verdict.champion_version == version
    assert champion_cost > table.loc[served, "total_cost"]  # it costs more than the textbook policy ...
    assert rejudged["retire"] and rejudged["version"] == version  # ... so it stops deciding
    assert rejudged["reasons"][0].startswith("champion: FAILED")
    # The challenger is judged against both the textbook policy and the champion: two claims, two guards.
    assert len(verdict.evidence) == 4


def test_a_champion_trained_for_another_setting_is_not_compared(cfg, reviews):
    setup_tracking(cfg)
    _register_champion(cfg, real.fit(lifecycle.concat(reviews), cfg, seed=0), reviews[0])
    other = cfg.model_copy(update={"policy": cfg.policy.model_copy(update={"n_actions": 21})})  # another action grid
    verdict, _, rejudged = lifecycle.judge(other, reviews, real.fit(lifecycle.concat(reviews), other, seed=1))
    assert verdict.champion is None and verdict.champion_version == "1" and len(verdict.reasons) == 3
    assert not rejudged["retire"]


def test_origins_streamed_into_one_training_set_keep_each_series_rows_in_order():
    first, second = _reviews(0), _reviews(1)
    pooled = lifecycle.concat(iter([first, second]), 2 * SERIES)  # a stream, as policy-train reads its file
    assert pooled.ids[:2] == ["S0@0", "S1@0"] and pooled.ids[SERIES : SERIES + 2] == ["S0@1", "S1@1"]
    assert pooled.paths.shape == (2 * SERIES, REVIEWS, SAMPLES, L + R)
    # Row SERIES + 3 is the second origin's fourth series, every path of it, and its demand beside it.
    assert np.array_equal(pooled.paths[SERIES + 3], second.paths[3]) and np.array_equal(pooled.paths[2], first.paths[2])
    assert np.array_equal(pooled.demand[SERIES + 3], second.demand[3]) and pooled.price[SERIES + 3] == second.price[3]
    with pytest.raises(ValueError, match=f"hold {SERIES} series, not the {2 * SERIES}"):
        lifecycle.concat(iter([first]), 2 * SERIES)
    with pytest.raises(ValueError, match=f"more than the {SERIES} series expected"):
        lifecycle.concat(iter([first, second]), SERIES)
