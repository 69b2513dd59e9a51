"""The learned policies' environment: the same dynamics as the backtest's simulation, on a hand trace."""

import numpy as np
import pytest

from supplyml.replenishing import known
from supplyml.replenishing.env import PathDemand, ReplenishmentEnv, StableBaselinesEnv, path_features
from supplyml.replenishing.lost_sales import base_stock
from supplyml.simulation import simulate

# test_simulation's hand trace: L = 1, R = 2, reviews on days 0, 2, 4; prices 10 and 2.
DEMAND = np.array([[3, 1, 4, 2, 5, 2], [1, 2, 1, 0, 1, 2]], dtype=float)
LEVELS = np.array([[6, 5, 7], [2, 2, 3]], dtype=float)
PRICE = np.array([10.0, 2.0])


class Trace:
    """A demand source replaying fixed days: no features, demand counted in whole units."""

    def __init__(self, demand, horizon=None):
        self.demand, self.n = demand, len(demand)
        self.horizon = horizon
        self.price = PRICE

    def features(self, review):
        return np.zeros((self.n, 0))

    def scale(self, review):
        return np.ones(self.n)

    def unit(self, review):
        return np.ones(self.n)

    def draw(self, review, rng):
        return self.demand[:, 2 * review : 2 * review + 2]

    def initial(self, rng):
        return LEVELS[:, 0]


def test_the_environment_replays_the_simulations_hand_trace():
    # By hand (test_simulation): A orders 0, 3, 6 and B 0, 2, 1; A ends its cycles with 2, 1, 4 on hand and
    # loses 0, 2, 4; B ends with 0, 2, 0 and loses 1, 1, 0. Holding 0.01, lost sales 0.5 of price.
    env = ReplenishmentEnv(Trace(DEMAND), lead_time=1, review_period=2, holding=0.01, penalty=0.5, n_actions=10)
    obs, _ = env.reset(seed=0)
    orders, costs, lost, reviews_on_hand = [], [], [], []
    for k in range(3):
        reviews_on_hand.append(obs[:, 0].copy())
        action = np.maximum(LEVELS[:, k] - env.state().sum(1), 0)
        obs, reward, terminated, truncated, info = env.step(action)
        orders.append(info["ordered"])
        costs.append(info["cost"])
        lost.append(info["lost"])
        np.testing.assert_allclose(reward, -info["cost"] / PRICE)  # scale 1: cost in units of price
        assert not terminated.any() and not truncated.any()
    np.testing.assert_array_equal(np.column_stack(orders), [[0, 3, 6], [0, 2, 1]])
    np.testing.assert_array_equal(np.column_stack(lost), [[0, 2, 4], [1, 1, 0]])
    np.testing.assert_array_equal(np.column_stack(reviews_on_hand), [[6, 2, 1], [2, 0, 2]])
    # Cycle costs: A 0.1 * (3 + 2) = 0.5, then 0.1 * (0 + 1) + 5 * 2 = 10.1, then 0.1 * (0 + 4) + 5 * 4 = 20.4;
    # B 0.02 * 1 + 1 * 1 = 1.02, then 0.02 * 2 + 1 = 1.04, then 0.02 * 1 = 0.02.
    np.testing.assert_allclose(np.column_stack(costs), [[0.5, 10.1, 20.4], [1.02, 1.04, 0.02]])
    sim = simulate(
        DEMAND, np.repeat(LEVELS, 2, axis=1), lead_time=1, review_period=2, price=PRICE, holding_cost=0.01, lost_sales_cost=0.5
    )
    np.testing.assert_allclose(np.sum(costs, axis=0), sim.per_series()["total_cost"])


def test_episodes_end_together_and_reset_on_the_next_step():
    env = ReplenishmentEnv(Trace(DEMAND, horizon=2), lead_time=1, review_period=2, holding=0.01, penalty=0.5, n_actions=10)
    env.reset(seed=0)
    assert not env.step(np.zeros(2))[3].any()
    obs, reward, terminated, truncated, _ = env.step(np.zeros(2))
    assert truncated.all() and not terminated.any()
    obs, reward, terminated, truncated, _ = env.step(np.full(2, 9))  # ignored: this step resets
    np.testing.assert_array_equal(obs[:, 0], LEVELS[:, 0])
    np.testing.assert_array_equal(reward, 0.0)

    sb3 = StableBaselinesEnv(
        ReplenishmentEnv(Trace(DEMAND, horizon=1), lead_time=1, review_period=2, holding=0.01, penalty=0.5, n_actions=10)
    )
    sb3.reset()
    sb3.step_async(np.zeros(2, dtype=int))
    obs, reward, done, infos = sb3.step_wait()
    assert done.all() and all(i["TimeLimit.truncated"] for i in infos)
    # A at the end of the cycle: 6 - 3 - 1 = 2 on hand, B 2 - 1 - 1 = 0; then straight back to the start.
    np.testing.assert_array_equal([i["terminal_observation"][0] for i in infos], [2, 0])
    np.testing.assert_array_equal(obs[:, 0], LEVELS[:, 0])


def test_actions_are_clipped_to_the_action_space():
    env = ReplenishmentEnv(Trace(DEMAND), lead_time=1, review_period=2, holding=0.01, penalty=0.5, n_actions=4)
    env.reset(seed=0)
    np.testing.assert_array_equal(env.step(np.array([7, -2]))[4]["ordered"], [3, 0])


def test_path_features_and_the_series_scale():
    # One series, two paths over L + R = 4 days (R = 2): totals 4 and 12.
    paths = np.array([[[1, 1, 1, 1], [3, 3, 3, 3]]], dtype=float)
    features, scale = path_features(paths, review_period=2)
    np.testing.assert_allclose(features, [[np.quantile([4, 12], 0.5), np.quantile([4, 12], 0.8), np.quantile([4, 12], 0.95)]])
    np.testing.assert_allclose(scale, [8 * 2 / 4])  # mean total 8 over 4 days: 4 per review period
    demand = PathDemand(paths[:, None], review_period=2, price=np.array([1.0]), initial=np.array([5.0]))
    env = ReplenishmentEnv(demand, lead_time=2, review_period=2, holding=0.1, penalty=1.0, n_actions=31)
    obs, _ = env.reset(seed=0)
    # On hand 5, nothing due tomorrow, then the three quantiles: all over the scale, 4.
    np.testing.assert_allclose(obs, [[5 / 4, 0, *(features[0] / 4)]], rtol=1e-6)
    _, _, _, truncated, info = env.step(np.array([10]))  # 10 tenths of 4 units
    np.testing.assert_allclose(info["ordered"], [4.0])
    assert truncated.all()  # one review of paths: a one-step episode
    assert info["demand"][0].tolist() in ([1, 1], [3, 3])  # the period's demand is one of the paths


def test_a_long_simulated_run_matches_the_exact_cost():
    # Base stock 12 at lead time 1: the dynamic program says 4.1628 per period.
    system = known.instance(1)
    exact = system.average_cost(base_stock(12))
    assert exact == pytest.approx(4.1628, abs=1e-4)
    assert known.simulated_cost(system, known.heuristic(base_stock(12)), 100_000) == pytest.approx(exact, abs=0.05)


def test_interval_is_the_student_t_interval():
    # Mean 2, sample sd 1 over 3 values: t(0.975, 2) = 4.3027 -> half-width 4.3027 / sqrt(3) = 2.4841.
    mean, half = known.interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(2.4841, abs=1e-4)
    assert known.interval([4.0]) == (4.0, 0.0)
