import numpy as np
import pytest

from supplyml.inventory import BaseStockDecision, base_stock, classical, normal_base_stock


@pytest.fixture(scope="module")
def poisson_paths():
    # 200,000 paths of 7 days of Poisson(2) demand; the policy must only read the first L + R days.
    return np.random.default_rng(0).poisson(2.0, size=(200_000, 7)).astype(float)


def test_poisson_textbook(poisson_paths):
    # L + R = 5 days -> total demand Poisson(10): P(X <= 14) = 0.9165, P(X <= 15) = 0.9513 -> S = 15.
    # Lead time alone: Poisson(6): P(X <= 9) = 0.9161, P(X <= 10) = 0.9574 -> reorder point 10.
    d = base_stock(poisson_paths, lead_time=3, review_period=2, service_level=0.95, on_hand=4, on_order=3)
    assert isinstance(d, BaseStockDecision)
    assert d.order_up_to == 15
    assert d.reorder_point == 10
    assert d.expected_demand == pytest.approx(10, abs=0.05)
    assert d.safety_stock == pytest.approx(5, abs=0.05)
    assert d.order_quantity == 8  # 15 - (4 + 3)


def test_policy_does_not_sum_daily_quantiles(poisson_paths):
    # Daily Poisson(2): P(X <= 4) = 0.947, P(X <= 5) = 0.983 -> daily 95% quantile 5; five days sum to 25.
    daily = np.quantile(poisson_paths[:, :5], 0.95, axis=0, method="inverted_cdf")
    assert daily.sum() == 25
    d = base_stock(poisson_paths, lead_time=3, review_period=2, service_level=0.95, on_hand=0, on_order=0)
    assert d.order_up_to == 15


def test_normal_textbook():
    # mu 10/day, sigma 3/day, L + R = 9: S = 90 + 1.6449 * 3 * sqrt(9) = 104.80, safety stock 14.80
    exact = normal_base_stock(10, 3, lead_time=4, review_period=5, service_level=0.95)
    assert exact.order_up_to == pytest.approx(104.80, abs=0.01)
    assert exact.safety_stock == pytest.approx(14.80, abs=0.01)
    assert exact.expected_demand == pytest.approx(90)
    assert exact.reorder_point == pytest.approx(40 + 1.6449 * 3 * 2, abs=0.01)  # L = 4 alone
    assert exact.order_quantity == pytest.approx(104.80, abs=0.01)  # nothing on hand or on order

    paths = np.random.default_rng(1).normal(10, 3, size=(200_000, 9))
    sampled = base_stock(paths, lead_time=4, review_period=5, service_level=0.95, on_hand=50, on_order=20)
    assert sampled.order_up_to == pytest.approx(104.80, abs=0.3)
    assert sampled.safety_stock == pytest.approx(14.80, abs=0.3)
    assert sampled.order_quantity == pytest.approx(104.80 - 70, abs=0.3)


def test_deterministic_demand():
    # 3 units every day, L = 2, R = 3: S = 15, no uncertainty so no safety stock, reorder point 3 * 2 = 6
    flat = np.full((10, 5), 3.0)
    d = base_stock(flat, lead_time=2, review_period=3, service_level=0.99, on_hand=5, on_order=0)
    assert (d.order_up_to, d.safety_stock, d.reorder_point, d.expected_demand) == (15, 0, 6, 15)
    assert d.order_quantity == 10


def test_no_order_when_position_covers_target():
    flat = np.full((10, 5), 3.0)
    d = base_stock(flat, lead_time=2, review_period=3, service_level=0.9, on_hand=12, on_order=8)
    assert d.order_quantity == 0


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("lead_time", {"lead_time": -1}),
        ("review_period", {"review_period": 0}),
        ("service_level", {"service_level": 1.0}),
        ("service_level", {"service_level": 0.0}),
        ("on_hand", {"on_hand": -1}),
        ("on_order", {"on_order": -0.5}),
        ("horizon", {"lead_time": 3, "review_period": 3}),  # paths only cover 5 days
    ],
)
def test_invalid_arguments_name_the_field(field, kwargs):
    args = dict(lead_time=2, review_period=3, service_level=0.95, on_hand=0, on_order=0) | kwargs
    with pytest.raises(ValueError, match=field):
        base_stock(np.ones((4, 5)), **args)


def test_normal_rejects_negative_sd():
    with pytest.raises(ValueError, match="sd_daily"):
        normal_base_stock(10, -1, lead_time=1, review_period=1, service_level=0.9)


def test_classical_reads_mean_and_spread_of_the_recent_days():
    # 28 days alternating 8 and 12: mu 10, population sigma 2. L = 4, R = 5:
    # S = 90 + 1.6449 * 2 * 3 = 99.87, reorder point 40 + 1.6449 * 2 * 2 = 46.58.
    d = classical(np.array([8.0, 12.0] * 14), lead_time=4, review_period=5, service_level=0.95, on_hand=30, on_order=10)
    assert d.order_up_to == pytest.approx(99.87, abs=0.01) and d.reorder_point == pytest.approx(46.58, abs=0.01)
    assert d.expected_demand == pytest.approx(90) and d.safety_stock == pytest.approx(9.87, abs=0.01)
    assert d.order_quantity == pytest.approx(99.87 - 40, abs=0.01)
    with pytest.raises(ValueError, match="recent demand"):
        classical(np.array([]), 4, 5, 0.95, 0, 0)


def test_planning_decides_with_the_classical_policy_where_it_won():
    import pandas as pd
    from conftest import weekly_panel

    from supplyml import planning
    from supplyml.forecasting.statistical import Statistical

    panel = weekly_panel(days=90, n=2)
    model = Statistical.fit(panel, "window_average", 28, 7, 1)
    items = [
        {"sku": "S1", "on_hand": 5.0, "lead_time_days": 3, "review_period_days": 7, "service_level": 0.95},
        {
            "sku": "S1",
            "on_hand": 5.0,
            "lead_time_days": 3,
            "review_period_days": 7,
            "service_level": 0.95,
            "policy": "base_stock",
        },
    ]
    by_default, named = planning.replenish(model, items, 200, seed=0, default="classical", ma_window=28)
    recent = panel[(panel["unique_id"] == "S1") & (panel["ds"] > panel["ds"].max() - pd.Timedelta(days=28))]["y"]
    mu, sigma = recent.mean(), recent.std(ddof=0)
    assert len(recent) == 28 and by_default["policy"] == "classical" and named["policy"] == "base_stock"
    assert by_default["order_up_to"] == pytest.approx(10 * mu + 1.644854 * sigma * np.sqrt(10), abs=1e-3)
    assert by_default["order_quantity"] == pytest.approx(by_default["order_up_to"] - 5, abs=1e-3)
