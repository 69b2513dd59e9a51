"""The exact lost-sales solver against Zipkin (2008)'s published costs (Poisson mean 5, h = 1, p = 4)."""

import numpy as np
import pytest

from supplyml.replenishing.lost_sales import (
    LostSales,
    base_stock,
    best_base_stock,
    best_capped_base_stock,
    capped_base_stock,
    standard_base_stock_level,
)


@pytest.mark.parametrize("lead_time, optimal, standard", [(1, 4.04, 4.39), (2, 4.40, 4.94)])
def test_zipkins_optimal_and_standard_base_stock_costs(lead_time, optimal, standard):
    system = LostSales(lead_time=lead_time)
    cost, order = system.optimal()
    assert cost == pytest.approx(optimal, abs=0.02)
    assert system.average_cost(base_stock(standard_base_stock_level(system))) == pytest.approx(standard, abs=0.02)
    # The optimal policy, evaluated as a policy, costs what the Bellman equation says.
    table = dict(zip(map(tuple, system.states()), order))
    assert system.average_cost(lambda states: np.array([table[tuple(s)] for s in states])) == pytest.approx(cost, abs=1e-5)


def test_the_standard_levels_are_the_backorder_newsvendor_quantiles():
    # P(Poisson(10) <= 12) = 0.792 < 0.8 <= P(<= 13) = 0.865; P(Poisson(15) <= 17) = 0.749 < 0.8 <= 0.820.
    assert [standard_base_stock_level(LostSales(lead_time=L)) for L in (1, 2)] == [13, 18]


def test_heuristics_sit_between_the_optimum_and_standard_base_stock():
    system = LostSales(lead_time=2)
    optimal, _ = system.optimal()
    level, best = best_base_stock(system, range(10, 22))
    *_, capped = best_capped_base_stock(system, range(12, 19), range(3, 16))
    standard = system.average_cost(base_stock(standard_base_stock_level(system)))
    assert optimal < capped < best < standard and level == 16


def test_a_cap_of_zero_orders_nothing_and_loses_every_sale():
    # Nothing ever arrives: on hand drains to 0 and every unit of demand (mean 5) is lost at p = 4.
    assert LostSales(lead_time=1).average_cost(capped_base_stock(20, 0)) == pytest.approx(4 * 5.0, abs=1e-6)


def test_a_lead_time_below_one_is_refused():
    with pytest.raises(ValueError, match="lead_time must be >= 1"):
        LostSales(lead_time=0)
