import dataclasses

import numpy as np
import pytest
from scipy.stats import norm, poisson

from supplyml.simulation import (
    Simulation,
    expand_levels,
    moving_average_levels,
    perfect_foresight_levels,
    review_days,
    sample_path_levels,
    simulate,
)


def test_hand_computed_two_series():
    # L = 1, R = 2: reviews on days 0, 2, 4; an order placed on day d arrives on day d + 1.
    # Series A, price 10, S = 6, 5, 7, demand 3 1 4 2 5 2, starts with 6 on hand:
    #   day 0: IP 6 = S, order 0; sell 3 -> 3     day 3: +3 arrives -> 3; sell 2 -> 1
    #   day 1: sell 1 -> 2                         day 4: IP 1, order 7 - 1 = 6; sell 1 of 5, lose 4 -> 0
    #   day 2: IP 2, order 5 - 2 = 3; sell 2 of 4, lose 2 -> 0     day 5: +6 arrives -> 6; sell 2 -> 4
    # Series B, price 2, S = 2, 2, 3, demand 1 2 1 0 1 2, starts with 2:
    #   day 0: order 0; sell 1 -> 1                day 3: +2 arrives -> 2; no demand
    #   day 1: sell 1 of 2, lose 1 -> 0            day 4: IP 2, order 3 - 2 = 1; sell 1 -> 1
    #   day 2: IP 0, order 2; lose 1 -> 0          day 5: +1 arrives -> 2; sell 2 -> 0
    demand = np.array([[3, 1, 4, 2, 5, 2], [1, 2, 1, 0, 1, 2]], dtype=float)
    levels = np.array([[6, 6, 5, 5, 7, 7], [2, 2, 2, 2, 3, 3]], dtype=float)
    sim = simulate(
        demand, levels, lead_time=1, review_period=2, price=np.array([10.0, 2.0]), holding_cost=0.01, lost_sales_cost=0.5
    )
    assert isinstance(sim, Simulation)
    np.testing.assert_array_equal(sim.on_hand, [[3, 2, 0, 1, 0, 4], [1, 0, 0, 2, 1, 0]])
    np.testing.assert_array_equal(sim.sales, [[3, 1, 2, 2, 1, 2], [1, 1, 0, 0, 1, 2]])
    np.testing.assert_array_equal(sim.lost, [[0, 0, 2, 0, 4, 0], [0, 1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(sim.orders, [[0, 0, 3, 0, 6, 0], [0, 0, 2, 0, 1, 0]])
    np.testing.assert_array_equal(sim.daily_on_hand(), [4, 2, 0, 3, 1, 4])

    # Cycles {0,1}, {2,3}, {4,5}. A loses in {2,3} and {4,5}; B in {0,1} and {2,3} -> 2 of 6 clean.
    # Holding: A 0.01 * 10 * 10 units = 1.00, B 0.01 * 2 * 4 = 0.08. Lost: A 0.5 * 10 * 6 = 30, B 0.5 * 2 * 2 = 2.
    # Sold 11 of 17 and 5 of 7 -> 16 of 24; on hand 10 + 4 units over 12 series-days.
    assert sim.summary() == pytest.approx(
        {
            "cycle_service_level": 2 / 6,
            "fill_rate": 16 / 24,
            "avg_on_hand": 14 / 12,
            "holding_cost": 1.08,
            "lost_sales_cost": 32.0,
            "total_cost": 33.08,
        }
    )
    per = sim.per_series()
    assert list(per.columns) == list(sim.summary())
    np.testing.assert_allclose(per["cycle_service_level"], [1 / 3, 1 / 3])
    np.testing.assert_allclose(per["fill_rate"], [11 / 17, 5 / 7])
    np.testing.assert_allclose(per["avg_on_hand"], [10 / 6, 4 / 6])
    np.testing.assert_allclose(per["holding_cost"], [1.0, 0.08])
    np.testing.assert_allclose(per["lost_sales_cost"], [30.0, 2.0])
    np.testing.assert_allclose(per["total_cost"], [31.0, 2.08])


def test_lead_time_zero_arrives_same_day_and_last_partial_cycle_counts():
    # L = 0, R = 2, S = 2, demand 1 1 2 0 3 over 5 days: cycles {0,1}, {2,3}, {4}.
    # day 0: sell 1 -> 1; day 1: sell 1 -> 0; day 2: order 2, it arrives before demand, sell 2 -> 0;
    # day 3: nothing; day 4: order 2, sell 2 of 3, lose 1. Only the partial cycle {4} loses -> 2/3.
    sim = simulate(
        np.array([[1.0, 1, 2, 0, 3]]),
        np.full((1, 5), 2.0),
        lead_time=0,
        review_period=2,
        price=np.ones(1),
        holding_cost=0.0,
        lost_sales_cost=1.0,
    )
    np.testing.assert_array_equal(sim.orders, [[0, 0, 2, 0, 2]])
    np.testing.assert_array_equal(sim.sales, [[1, 1, 2, 0, 2]])
    np.testing.assert_array_equal(sim.lost, [[0, 0, 0, 0, 1]])
    np.testing.assert_array_equal(sim.on_hand, [[1, 0, 0, 0, 0]])
    assert sim.summary()["cycle_service_level"] == pytest.approx(2 / 3)


def test_inventory_position_counts_orders_in_transit():
    # L = 2, R = 1, S = 3, one unit a day, starting with 3: every review after day 0 sees on hand plus
    # one unit still in transit, so it orders exactly the 1 unit sold. Ignoring the pipeline, day 2
    # would order 3 - 1 = 2.
    #   day 0: IP 3, order 0 -> 2     day 1: IP 2 + 0, order 1 -> 1
    #   day 2: day 0's 0 arrives; IP 1 + 1, order 1 -> 0     day 3: day 1's 1 arrives; IP 1 + 1, order 1 -> 0
    sim = simulate(
        np.ones((1, 4)),
        np.full((1, 4), 3.0),
        lead_time=2,
        review_period=1,
        price=np.ones(1),
        holding_cost=0.0,
        lost_sales_cost=0.0,
    )
    np.testing.assert_array_equal(sim.orders, [[0, 1, 1, 1]])
    np.testing.assert_array_equal(sim.on_hand, [[2, 1, 0, 0]])
    assert sim.lost.sum() == 0


def test_initial_on_hand_and_orders_arriving_after_the_horizon():
    # L = 2, R = 3, S = 4, start empty, one unit a day over 5 days:
    #   day 0: order 4 (arrives day 2); lose 1    day 1: lose 1
    #   day 2: +4, sell 1 -> 3                    day 3: IP 3, order 1 (due day 5: never arrives); sell -> 2
    #   day 4: sell -> 1
    sim = simulate(
        np.ones((1, 5)),
        np.full((1, 5), 4.0),
        lead_time=2,
        review_period=3,
        price=np.ones(1),
        holding_cost=0.0,
        lost_sales_cost=0.0,
        initial_on_hand=np.zeros(1),
    )
    np.testing.assert_array_equal(sim.orders, [[4, 0, 0, 1, 0]])
    np.testing.assert_array_equal(sim.lost, [[1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(sim.on_hand, [[0, 0, 3, 2, 1]])


def test_levels_are_read_on_review_days_only():
    demand = np.array([[2.0, 1, 3, 0, 1]])
    levels = np.array([[4.0, 4, 3, 3, 5]])
    noisy = levels.copy()
    noisy[:, [1, 2, 4]] = [np.nan, -7, 100]  # with R = 3, only days 0 and 3 are review days
    a = simulate(demand, levels, 1, 3, np.ones(1), 0.1, 0.2)
    b = simulate(demand, noisy, 1, 3, np.ones(1), 0.1, 0.2)
    np.testing.assert_array_equal(a.orders, b.orders)
    np.testing.assert_array_equal(a.on_hand, b.on_hand)


def test_costs_and_flows_balance():
    rng = np.random.default_rng(3)
    n, T, L = 50, 40, 3
    demand = rng.poisson(2.0, (n, T)).astype(float)
    levels = rng.uniform(0, 20, (n, T))
    price = rng.uniform(1, 10, n)
    sim = simulate(demand, levels, L, 4, price, holding_cost=0.002, lost_sales_cost=0.3)
    s = sim.summary()
    assert s["holding_cost"] == pytest.approx(0.002 * (price[:, None] * sim.on_hand).sum())
    assert s["lost_sales_cost"] == pytest.approx(0.3 * (price[:, None] * sim.lost).sum())
    assert s["total_cost"] == pytest.approx(s["holding_cost"] + s["lost_sales_cost"])
    per = sim.per_series()
    for col in ("holding_cost", "lost_sales_cost", "total_cost"):
        assert per[col].sum() == pytest.approx(s[col])
    assert per["avg_on_hand"].mean() == pytest.approx(s["avg_on_hand"])
    np.testing.assert_allclose(sim.sales + sim.lost, demand)
    # Stock is conserved: start + arrivals within the horizon - sales = end.
    arrived = sim.orders[:, : T - L].sum(axis=1)
    np.testing.assert_allclose(levels[:, 0] + arrived - sim.sales.sum(axis=1), sim.on_hand[:, -1], atol=1e-9)


def test_no_demand_means_full_fill_rate():
    sim = simulate(np.zeros((2, 3)), np.ones((2, 3)), 1, 1, np.ones(2), 0.1, 0.1)
    assert sim.summary()["fill_rate"] == 1.0
    assert sim.summary()["cycle_service_level"] == 1.0
    np.testing.assert_array_equal(sim.per_series()["fill_rate"], [1.0, 1.0])


def test_result_is_read_only():
    sim = simulate(np.ones((1, 2)), np.ones((1, 2)), 0, 1, np.ones(1), 0.1, 0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sim.holding_cost = 1.0
    with pytest.raises(ValueError, match="read-only"):
        sim.on_hand[0, 0] = 5.0


def test_caller_arrays_stay_writable():
    demand, price = np.ones((1, 2)), np.ones(1)
    simulate(demand, np.ones((1, 2)), 0, 1, price, 0.1, 0.1)
    demand[0, 0], price[0] = 2.0, 3.0


def test_review_days_and_expand_levels():
    np.testing.assert_array_equal(review_days(7, 3), [0, 3, 6])
    np.testing.assert_array_equal(review_days(6, 2), [0, 2, 4])
    np.testing.assert_array_equal(expand_levels(np.array([[1.0, 2, 3]]), 7, 3), [[1, 1, 1, 2, 2, 2, 3]])
    np.testing.assert_array_equal(expand_levels(np.array([[1.0, 2, 3], [4, 5, 6]]), 5, 2), [[1, 1, 2, 2, 3], [4, 4, 5, 5, 6]])
    with pytest.raises(ValueError, match="one level per review day"):
        expand_levels(np.array([[1.0, 2]]), 7, 3)


def test_perfect_foresight_levels_by_hand():
    # L + R = 3, reviews 0, 2, 4: 1+2+3 = 6, 3+4+5 = 12, then only day 4 is left: 5.
    levels = perfect_foresight_levels(np.array([[1.0, 2, 3, 4, 5]]), lead_time=1, review_period=2)
    np.testing.assert_array_equal(levels, [[6, 6, 12, 12, 5]])


@pytest.mark.parametrize("lead_time, review_period", [(0, 1), (0, 7), (1, 2), (3, 7), (5, 2), (10, 3)])
def test_perfect_foresight_never_loses_a_sale(lead_time, review_period):
    # Why it holds: on a day u that review t covers (t + L <= u < t + L + R), everything in the position
    # S_t raised at t has arrived, so stock before demand >= S_t - D[t, u) = D[u, t + L + R) >= D_u. Days
    # before the first arrival live off the initial stock S_0 >= D[0, L + R).
    demand = np.random.default_rng(lead_time * 10 + review_period).poisson(3.0, (200, 60)).astype(float)
    levels = perfect_foresight_levels(demand, lead_time, review_period)
    sim = simulate(demand, levels, lead_time, review_period, np.ones(200), 0.001, 0.4)
    assert sim.lost.sum() == 0
    assert sim.summary()["cycle_service_level"] == 1.0
    assert sim.summary()["fill_rate"] == 1.0


def test_perfect_foresight_on_fractional_demand():
    # Fractional units leave float residue in the stock arithmetic; it must not count as a stockout.
    demand = np.random.default_rng(7).gamma(0.7, 3.0, (200, 60))
    sim = simulate(demand, perfect_foresight_levels(demand, 3, 7), 3, 7, np.ones(200), 0.001, 0.4)
    assert sim.lost.max() < 1e-9
    assert sim.summary()["cycle_service_level"] == 1.0
    assert sim.summary()["fill_rate"] == pytest.approx(1.0)


def test_moving_average_levels_constant_history():
    # 7 units every day: mu = 7, sigma = 0, so S = (L + R) * 7 = 70 at every review, no safety stock.
    levels = moving_average_levels(np.full((2, 30), 7.0), np.full((2, 21), 7.0), lead_time=3, review_period=7, service_level=0.99)
    assert (levels == 70.0).all()


def test_moving_average_levels_by_hand():
    # window 4, L = 1, R = 2 -> L + R = 3, z = norm.ppf(0.95) = 1.6449; reviews on days 0, 2, 4.
    # day 0: last 4 days 1 2 3 4: mu 2.5, sigma^2 = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    #        S = 3 * 2.5 + z * sqrt(1.25 * 3) = 7.5 + 1.6449 * 1.9365 = 10.6853
    # day 2: 3 4 5 5: mu 4.25, sigma^2 = (1.5625 + 0.0625 + 0.5625 + 0.5625) / 4 = 0.6875
    #        S = 12.75 + z * sqrt(0.6875 * 3) = 12.75 + 1.6449 * 1.4361 = 15.1122
    # day 4: 5 5 5 5: S = 15
    history = np.array([[1.0, 2, 3, 4]])
    demand = np.full((1, 5), 5.0)
    levels = moving_average_levels(history, demand, lead_time=1, review_period=2, service_level=0.95, window=4)
    z = norm.ppf(0.95)
    s0, s2 = 7.5 + z * np.sqrt(3.75), 12.75 + z * np.sqrt(2.0625)
    np.testing.assert_allclose(levels, [[s0, s0, s2, s2, 15.0]])
    np.testing.assert_allclose([s0, s2], [10.6853, 15.1122], atol=1e-4)
    # The level at day t never looks at day t or later.
    later = demand.copy()
    later[:, 2:] = 100.0
    np.testing.assert_array_equal(moving_average_levels(history, later, 1, 2, 0.95, window=4)[:, :3], levels[:, :3])


def test_moving_average_needs_a_full_window_of_history():
    with pytest.raises(ValueError, match="window"):
        moving_average_levels(np.ones((1, 10)), np.ones((1, 5)), 1, 2, 0.95, window=28)


def test_sample_path_levels_quantile_of_totals():
    # Poisson(2) a day over L + R = 5 days: total Poisson(10), P(X <= 13) = 0.8645, P(X <= 14) = 0.9165
    # -> S = 14 at 90%. The daily 90% quantile is 4 (P(X <= 4) = 0.947), and five of them would give 20.
    paths = np.random.default_rng(0).poisson(2.0, (2, 20_000, 5)).astype(float)
    np.testing.assert_array_equal(sample_path_levels(paths, 0.9), [14, 14])
    assert np.quantile(paths[0], 0.9, axis=0, method="inverted_cdf").sum() == 20
    # Tiny case: totals 1, 4, 0, 4 -> the 50% inverted-CDF quantile is 1.
    tiny = np.array([[[1.0, 0], [2, 2], [0, 0], [3, 1]]])
    np.testing.assert_array_equal(sample_path_levels(tiny, 0.5), [1])


def test_poisson_quantile_policy_hits_its_cycle_service_level():
    # Config defaults L = 3, R = 7; Poisson(1) a day, so (L + R)-day demand is Poisson(10) and the exact
    # 95% quantile is S = 15 with P(X <= 15) = 0.9513: the textbook (backorder) CSL. With lost sales,
    # stock before demand on a day u covered by review t is S - sales[t, u) >= S - D[t, u), so a cycle
    # only loses demand when the (L + R)-day demand exceeds S: CSL >= 0.9513 up to sampling noise.
    # 3,000 series x 20 cycles = 60,000 cycles: standard error sqrt(0.95 * 0.05 / 60,000) = 0.0009, so
    # 0.004 below is over 4 standard errors. Above, lost sales during the lead time leave extra stock
    # for later days; at a 5% stockout rate that adds a few thousandths, and 0.01 leaves room.
    n, L, R = 3000, 3, 7
    T = 20 * R
    S = poisson.ppf(0.95, 10)
    target = poisson.cdf(S, 10)
    assert S == 15 and target == pytest.approx(0.9513, abs=1e-4)
    demand = np.random.default_rng(11).poisson(1.0, (n, T)).astype(float)
    csl = simulate(demand, np.full((n, T), S), L, R, np.ones(n), 0.001, 0.4).summary()["cycle_service_level"]
    assert target - 0.004 < csl < target + 0.01


GOOD = {
    "demand": np.ones((2, 4)),
    "levels": np.ones((2, 4)),
    "lead_time": 1,
    "review_period": 2,
    "price": np.ones(2),
    "holding_cost": 0.1,
    "lost_sales_cost": 0.2,
}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"demand": np.ones(4)}, "demand must have shape"),
        ({"demand": np.full((2, 4), -1.0)}, "demand must be >= 0"),
        ({"demand": np.array([[1, np.nan, 1, 1], [1, 1, 1, 1]])}, r"demand contains NaN or inf at \[0, 1\]"),
        ({"demand": np.ones((0, 4)), "levels": np.ones((0, 4)), "price": np.ones(0)}, "at least one series"),
        ({"levels": np.ones((2, 3))}, "levels must have the demand's shape"),
        ({"levels": np.array([[1.0, 1, np.nan, 1], [1, 1, 1, 1]])}, "levels must be finite.*series 0, day 2"),
        ({"levels": np.array([[1.0, 1, 1, 1], [-1, 1, 1, 1]])}, "levels must be finite.*series 1, day 0"),
        ({"price": np.ones(3)}, "price must have shape"),
        ({"price": np.array([1.0, -2])}, "price must be >= 0"),
        ({"holding_cost": -0.1}, "holding_cost"),
        ({"lost_sales_cost": np.nan}, "lost_sales_cost"),
        ({"lead_time": -1}, "lead_time must be >= 0"),
        ({"review_period": 0}, "review_period must be >= 1"),
        ({"initial_on_hand": np.array([1.0, -1])}, "initial_on_hand must be >= 0"),
        ({"initial_on_hand": np.ones(3)}, "initial_on_hand must have shape"),
    ],
)
def test_simulate_rejects_bad_input(change, message):
    with pytest.raises(ValueError, match=message):
        simulate(**(GOOD | change))


def test_day_counts_must_be_integers():
    with pytest.raises(TypeError, match="lead_time must be a whole number of days"):
        simulate(**(GOOD | {"lead_time": 1.5}))
    with pytest.raises(TypeError, match="review_period must be a whole number of days"):
        review_days(10, 2.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: perfect_foresight_levels(np.ones((1, 5)), -1, 2), "lead_time"),
        (lambda: perfect_foresight_levels(np.ones((1, 5)), 1, 0), "review_period"),
        (lambda: moving_average_levels(np.ones((1, 30)), np.ones((1, 5)), 1, 2, 1.0), "service_level"),
        (lambda: moving_average_levels(np.ones((2, 30)), np.ones((1, 5)), 1, 2, 0.9), "history has 2 series"),
        (lambda: moving_average_levels(np.full((1, 30), np.nan), np.ones((1, 5)), 1, 2, 0.9), "history contains NaN"),
        (lambda: sample_path_levels(np.ones((2, 5)), 0.9), "paths must have"),
        (lambda: sample_path_levels(np.full((1, 3, 2), np.inf), 0.9), "NaN or inf"),
        (lambda: sample_path_levels(np.ones((1, 3, 2)), 0.0), "service_level"),
    ],
)
def test_level_builders_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
