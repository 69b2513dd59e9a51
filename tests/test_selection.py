"""Model families behind the protocol, selection on validation origins, and calibration, on numbers
worked out by hand or from the distributions the data were drawn from."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import weekly_panel
from scipy.stats import norm

from supplyml.config import Config, ConfigError, ModelConfig
from supplyml.data import DataError
from supplyml.forecasting import base, load
from supplyml.forecasting import calibration as cal
from supplyml.forecasting.base import LEVEL_GRID, Calibration, copula_paths, quantile_paths
from supplyml.forecasting.combination import Combination
from supplyml.forecasting.gbm import LightGBM
from supplyml.forecasting.linear import Fourier, Linear
from supplyml.forecasting.selection import candidates, select, validation_origins
from supplyml.forecasting.statistical import Statistical


def test_level_map_inverts_the_observed_frequencies():
    actual = np.arange(10.0)  # 0..9
    q = np.tile([2.0, 5.0, 7.0], (10, 1))  # the 10%, 50% and 90% quantiles of every observation
    nominal, calibrated = cal.level_map(actual, q, np.array([0.1, 0.5, 0.9]))
    # Frequencies: below 2 -> 0.2; at 5, half of below (0.5) and at-or-below (0.6) -> 0.55; at or below 7 -> 0.8.
    # 0.5 lies between 0.2 and 0.55: level 0.1 + (0.5 - 0.2) / 0.35 * 0.4. Outside the curve: its ends.
    assert nominal == [0.1, 0.5, 0.9]
    assert calibrated == pytest.approx([0.1, 0.1 + 0.3 / 0.35 * 0.4, 0.9])


def test_calibration_maps_levels_and_is_the_identity_until_learnt():
    assert Calibration().total_level(0.95) == 0.95
    c = Calibration(daily=([0.1, 0.9], [0.05, 0.97]), total=([0.5, 0.95], [0.6, 0.99]))
    assert c.daily_levels([0.1, 0.5, 0.9]) == pytest.approx([0.05, 0.51, 0.97])
    assert c.total_level(0.95) == pytest.approx(0.99)


def test_copula_paths_keep_each_days_quantile_function_and_widen_totals_with_rho():
    q = np.broadcast_to(100 * LEVEL_GRID, (1, 5, len(LEVEL_GRID)))  # every day uniform on [0, 100]
    rng = np.random.default_rng(0)
    flat, tied = copula_paths(q, 20000, 0.0, rng), copula_paths(q, 20000, 0.8, rng)
    for paths in (flat, tied):
        assert np.quantile(paths[0, :, 2], [0.1, 0.3, 0.9]) == pytest.approx([10, 30, 90], abs=1.5)
    # Five equicorrelated days: Var(total) = 5 v (1 + 4 r); the Gaussian copula's rank correlation is
    # a little below rho, so the ratio sits between 3 and 1 + 4 x 0.8.
    assert 3 < tied[0].sum(1).var() / flat[0].sum(1).var() < 4.2


@pytest.mark.parametrize("block", [2**16, 6, 1])  # both series in one block, one series a block, less than a series
def test_quantile_paths_read_each_series_and_days_own_quantile_function_by_hand(block, monkeypatch):
    """Levels 0.1 / 0.5 / 0.9; series 0 day 1 has quantiles 1, 2, 4 and series 1 day 0 has 10, 20, 40.
    At u = 0.7: 2 + (0.7 - 0.5) / 0.4 x (4 - 2) = 3 and 30; below 0.1 the end value holds. The same read
    whether the paths are computed a block of series at a time or all at once."""
    monkeypatch.setattr(base, "PATH_BLOCK", block)
    levels = np.array([0.1, 0.5, 0.9])
    q = np.array([[[0.0, 0.0, 0.0], [1.0, 2.0, 4.0]], [[10.0, 20.0, 40.0], [5.0, 5.0, 5.0]]])  # (2 series, 2 days, 3)
    z = np.full((2, 3, 2), norm.ppf(0.7))
    z[:, 2, :] = norm.ppf(0.05)
    paths = quantile_paths(q, z, levels)
    assert paths.shape == (2, 3, 2)
    assert paths[0, 0].tolist() == pytest.approx([0.0, 3.0]) and paths[1, 1].tolist() == pytest.approx([30.0, 5.0])
    assert paths[0, 2].tolist() == [0.0, 1.0] and paths[1, 2].tolist() == [10.0, 5.0]


def test_sample_path_totals_are_drawn_a_block_of_series_at_a_time_with_the_draws_of_one_block():
    """More series than a block: the totals are those of one draw of copula paths for all of them."""
    rng = np.random.default_rng(1)
    q = np.sort(rng.gamma(2.0, 3.0, (cal.CHUNK + 77, 10, len(LEVEL_GRID))), axis=-1)
    whole = np.random.default_rng(9)
    expected = np.concatenate([copula_paths(q, 40, 0.5, whole).sum(2), copula_paths(q[:3], 40, 0.5, whole).sum(2)])
    np.testing.assert_array_equal(cal.path_totals([q, q[:3]], 0.5, 40, seed=9), expected)


@pytest.mark.parametrize("shared, low, high", [(False, 0.0, 0.25), (True, 0.5, 0.9)])
def test_path_correlation_is_chosen_by_the_totals_the_data_had(shared, low, high):
    """Poisson(8) days; with `shared` a level per window (lognormal, sigma 0.6) moves its days together."""
    rng = np.random.default_rng(1)
    n, days = 400, 10
    level = rng.lognormal(0, 0.6, (n, 1)) if shared else np.ones((n, 1))
    totals = rng.poisson(8 * level * np.ones((n, days))).sum(1).astype(float)
    # The forecaster knows each day's marginal only: the level-mixed Poisson, by simulation.
    marginal = rng.poisson(8 * (rng.lognormal(0, 0.6, 200000) if shared else 1.0))
    q = np.broadcast_to(np.quantile(marginal, LEVEL_GRID), (n, days, len(LEVEL_GRID)))
    rho, losses = cal.choose_rho(totals, [q], np.full(n, 8.0), [0.0, 0.25, 0.5, 0.75, 0.9], 400, seed=0)
    assert low <= rho <= high and set(losses) == {0.0, 0.25, 0.5, 0.75, 0.9}


def test_window_average_forecasts_the_mean_of_its_last_28_days_and_refits_on_new_history():
    panel = weekly_panel(200)
    model = Statistical.fit(panel, "window_average", horizon=14)
    mean = model.predict(["S2"], 3, [0.5])["mean"].to_numpy()
    assert mean == pytest.approx([panel[panel["unique_id"] == "S2"]["y"].iloc[-28:].mean()] * 3)
    model = model.with_history(panel[panel["ds"] < "2022-06-01"])
    earlier = panel[(panel["unique_id"] == "S2") & (panel["ds"] < "2022-06-01")]["y"].iloc[-28:].mean()
    fc = model.predict(["S2"], 3, [0.5])
    assert fc["mean"].to_numpy() == pytest.approx([earlier] * 3) and fc["ds"].iloc[0] == pd.Timestamp("2022-06-01")


def test_models_anchored_on_one_sorted_history_share_it_and_a_shuffled_one_is_sorted_first():
    panel = weekly_panel(120, n=3)
    shuffled = panel.sample(frac=1.0, random_state=0).assign(extra=1.0)  # rows out of order, a column no model keeps
    a = Statistical.fit(shuffled, "window_average", horizon=7)
    # Sorted by series then day, the daily columns only, rows numbered from 0: S0's 120 days, then S1's, ...
    assert list(a.history.columns) == ["unique_id", "ds", "y", "price", "promo", "event"]
    assert a.history["unique_id"].tolist() == [f"S{i}" for i in range(3) for _ in range(120)]
    assert (a.history.groupby("unique_id")["ds"].diff().dropna() == pd.Timedelta(days=1)).all()
    assert a.history.index.equals(pd.RangeIndex(360))
    b = Statistical.fit(a.history, "seasonal_naive", horizon=7)
    c = LightGBM.fit(a.history, horizon=7)
    assert b.history is a.history and c.history is a.history  # one frame, not a copy per model
    assert b.with_history(a.history).history is a.history
    # Sharing changes no forecast: S1's window average is the mean of its last 28 days, as from the shuffled rows.
    expected = panel[panel["unique_id"] == "S1"]["y"].iloc[-28:].mean()
    assert a.predict(["S1"], 2, [0.5])["mean"].to_numpy() == pytest.approx([expected] * 2)


def test_a_series_younger_than_the_models_minimum_history_is_forecast_at_its_mean():
    panel = weekly_panel(200)
    young = pd.DataFrame({"unique_id": "NEW", "ds": pd.date_range(end=panel["ds"].max(), periods=3), "y": [1.0, 2.0, 6.0]})
    model = Statistical.fit(pd.concat([panel, young], ignore_index=True), "window_average", horizon=14)
    fc = model.predict(["NEW", "S0"], 2, [0.5])
    assert fc["mean"].tolist()[:2] == [3.0, 3.0]
    assert fc["mean"].iloc[2] == pytest.approx(panel[panel["unique_id"] == "S0"]["y"].iloc[-28:].mean())


@pytest.mark.parametrize(
    "fit", [lambda p: LightGBM.fit(p, 28), lambda p: Statistical.fit(p, "window_average", 28)], ids=["lightgbm", "window_average"]
)
def test_a_history_too_short_to_backtest_gets_gaussian_bands_from_its_spread(fit):
    # 60 days < 2 backtests x 28 days + the model's minimum: no series has errors to calibrate on (a young
    # shop). Each series' band is its training demand's sd x z(level), as the peers' fallback gives.
    panel = weekly_panel(60)
    model = fit(panel)
    sd = panel.groupby("unique_id")["y"].std(ddof=0)
    assert sd.min() > 0
    assert model.residuals.table == pytest.approx(np.outer(sd.to_numpy(), norm.ppf(LEVEL_GRID)))
    mean, q = model.quantiles(list(sd.index), 28, [0.05, 0.5, 0.95])
    assert np.isfinite(q).all() and (q >= 0).all() and (q[..., 2] > q[..., 0]).all()


def test_a_combination_averages_means_and_quantiles_and_survives_save_and_load(tmp_path):
    panel = weekly_panel(200)
    members = {"lightgbm": LightGBM.fit(panel, 14), "window_average": Statistical.fit(panel, "window_average", 14)}
    combo = Combination(members, {"lightgbm": 0.25, "window_average": 0.75}, panel)
    combo.calibration = Calibration(rho=0.5, daily=([0.05, 0.5, 0.95], [0.02, 0.5, 0.99]))
    levels = [0.05, 0.5, 0.95]
    got = combo.predict(["S1", "S4"], 7, levels)
    parts = {n: m.predict(["S1", "S4"], 7, [0.02, 0.5, 0.99]) for n, m in members.items()}
    assert got["mean"].to_numpy() == pytest.approx(0.25 * parts["lightgbm"]["mean"] + 0.75 * parts["window_average"]["mean"])
    # Calibrated levels: the 95% column is read at 0.99 from each member, then averaged.
    assert got["q0.95"].to_numpy() == pytest.approx(0.25 * parts["lightgbm"]["q0.99"] + 0.75 * parts["window_average"]["q0.99"])
    combo.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert isinstance(loaded, Combination) and loaded.calibration.rho == 0.5
    pd.testing.assert_frame_equal(loaded.predict(["S1", "S4"], 7, levels), got)
    np.testing.assert_array_equal(loaded.sample(["S1"], 10, 50, seed=3), combo.sample(["S1"], 10, 50, seed=3))
    with pytest.raises(ValueError, match="must cover the members"):
        Combination(members, {"lightgbm": 1.0}, panel)


def test_re_anchoring_a_combination_re_anchors_copies_of_its_members():
    panel = weekly_panel(200)
    members = {n: Statistical.fit(panel, n, 14) for n in ("window_average", "seasonal_naive")}
    combo = Combination(members, {"window_average": 0.5, "seasonal_naive": 0.5}, panel)
    before = combo.predict(None, 7, [0.5])
    earlier = combo.with_history(panel[panel["ds"] < "2022-06-01"])
    end, cut = panel["ds"].max(), pd.Timestamp("2022-05-31")
    assert earlier.last_date == cut and all(m.last_date == cut for m in earlier.members.values())
    assert combo.last_date == end and all(m.last_date == end for m in [*combo.members.values(), *members.values()])
    assert earlier.members["window_average"].residuals is members["window_average"].residuals  # fitted state shared
    # The members read the combination's history and its index: one check and one index, not one per member.
    assert all(m.anchored is earlier.anchored and m.history is earlier.history for m in earlier.members.values())
    s2 = panel[(panel["unique_id"] == "S2") & (panel["ds"] <= cut)]["y"]
    mean = earlier.predict(["S2"], 7, [0.5])["mean"].to_numpy()  # halfway between last-28-days mean and last week
    assert mean == pytest.approx(0.5 * s2.iloc[-28:].mean() + 0.5 * s2.iloc[-7:].to_numpy())
    pd.testing.assert_frame_equal(combo.predict(None, 7, [0.5]), before)


def test_lightgbm_reads_known_promotions():
    panel = weekly_panel(300, n=8)
    rng = np.random.default_rng(4)
    promo = rng.random(len(panel)) < 0.15
    panel = panel.assign(promo=promo.astype(float), y=np.where(promo, 3 * panel["y"], panel["y"]))
    model = LightGBM.fit(panel, 14)
    days = model.forecast_dates(7)
    future = pd.DataFrame({"unique_id": "S5", "ds": days, "promo": [1.0, 0, 0, 0, 0, 0, 1.0], "event": 0.0})
    with_promo = model.predict(["S5"], 7, [0.5], future=future)["mean"].to_numpy()
    plain = model.predict(["S5"], 7, [0.5])["mean"].to_numpy()
    assert with_promo[0] > 2 * plain[0] and with_promo[6] > 2 * plain[6]


def test_validation_origins_step_back_from_a_horizon_before_the_cutoff():
    cfg = Config.model_validate({"features": {"horizon": 14}, "selection": {"origins": 3, "step_days": 7}})
    assert validation_origins(pd.Timestamp("2022-07-19"), cfg) == [
        pd.Timestamp("2022-06-22"),
        pd.Timestamp("2022-06-29"),
        pd.Timestamp("2022-07-06"),
    ]


def test_selection_scores_every_candidate_and_serves_a_calibrated_refit_of_the_choice():
    panel = weekly_panel(200)
    cfg = Config.model_validate(
        {
            "features": {"horizon": 14},
            "evaluation": {"n_jobs": 1},
            "selection": {"candidates": ["network", "lightgbm", "seasonal_naive", "window_average"], "origins": 3},
            "inventory": {"num_sample_paths": 200, "lead_time": 2, "review_period": 7},
        }
    )
    params = ModelConfig(hidden_size=16, num_layers=1, context_length=28, max_epochs=2, windows_per_series=16)
    model, evidence = select(panel, cfg, params)
    scores = evidence["validation"]
    singles = ["network", "lightgbm", "seasonal_naive", "window_average"]
    assert set(singles) <= set(scores) and evidence["peers"] == singles[1:]
    # Every equal-weight combination of 2 or 3 singles competes too: 6 + 4 of them.
    ranked = sorted(singles, key=lambda n: scores[n]["wrmsse"])
    assert len(scores) == 4 + 6 + 4 and " + ".join(ranked[:3]) in scores and " + ".join(ranked[1:]) in scores
    objective = {
        k: v["wrmsse"] / min(scores[n]["wrmsse"] for n in singles) + v["wspl"] / min(scores[n]["wspl"] for n in singles)
        for k, v in scores.items()
    }
    assert evidence["chosen"] == min(objective, key=objective.get)
    assert set(model.weights) == set(evidence["chosen"].split(" + ")) and sum(model.weights.values()) == pytest.approx(1)
    assert model.last_date == panel["ds"].max() and model.calibration.days == 9
    for member in model.members.values():  # refitted on every day, not only those before validation
        assert member.last_date == panel["ds"].max()
    assert 0 < model.order_level(0.95) < 1 and model.calibration.rho in cfg.selection.path_correlations


def test_arima_tells_a_weekly_series_from_an_ar1_one_and_survives_save_and_load(tmp_path):
    """Two planted patterns: a pure weekly profile with noise, and an AR(1) with no week in it. ARIMA's
    forecast repeats the first one's profile and, for the second, decays to its mean with no weekly cycle."""
    rng = np.random.default_rng(0)
    days = pd.date_range("2022-01-01", periods=200)
    profile = np.array([2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 0.0])
    weekly = profile[days.dayofweek] + rng.normal(0, 0.5, len(days))
    ar = np.empty(len(days))
    ar[0] = 10.0
    for t in range(1, len(days)):
        ar[t] = 10 + 0.6 * (ar[t - 1] - 10) + rng.normal()
    panel = pd.DataFrame({"unique_id": np.repeat(["weekly", "ar"], len(days)), "ds": np.tile(days, 2), "y": np.r_[weekly, ar]})
    model = Statistical.fit(panel, "arima", horizon=14)
    fc = model.predict(["weekly", "ar"], 14, [0.1, 0.5, 0.9])
    week = fc[fc["unique_id"] == "weekly"]
    np.testing.assert_allclose(week["mean"], profile[week["ds"].dt.dayofweek], atol=0.5)
    ar_mean = fc.loc[fc["unique_id"] == "ar", "mean"].to_numpy()
    assert np.ptp(ar_mean[7:]) < 0.2 and abs(ar_mean[-1] - 10) < 0.6  # flat, at its mean (a sample mean's sd is 0.18)
    model.save(tmp_path)
    again = load(tmp_path).predict(["weekly", "ar"], 14, [0.1, 0.5, 0.9])
    values = ["mean", "q0.1", "q0.5", "q0.9"]
    np.testing.assert_allclose(again[values], fc[values], rtol=1e-6, atol=1e-6)


def test_linear_weekday_terms_are_the_textbook_fourier_pairs():
    monday, thursday = pd.DatetimeIndex(["2024-01-01"]), pd.DatetimeIndex(["2024-01-04"])  # both by the calendar
    assert Fourier("sin", 1)(monday) == pytest.approx([0.0], abs=1e-9) and Fourier("cos", 1)(monday) == pytest.approx([1.0])
    assert Fourier("sin", 2)(thursday) == pytest.approx([np.sin(2 * np.pi * 2 * 3 / 7)])  # Thursday is day 3


def test_linear_learns_a_weekly_profile_and_a_promotion_uplift_and_survives_save_and_load(tmp_path):
    """Two planted patterns in two series of different levels: a weekday profile and +6 units on promotion
    days. Forecasts follow the profile, a known promotion lifts its day by about 6, and the saved model
    forecasts the same to 1e-6."""
    rng = np.random.default_rng(0)
    days = pd.date_range("2023-01-01", periods=300)
    profile = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, -15.0])  # Monday .. Sunday, about a mean of 0
    parts = []
    for uid, level in (("low", 30.0), ("high", 60.0)):
        promo = (rng.random(len(days)) < 0.15).astype(float)
        y = level + profile[days.dayofweek] + 6 * promo + rng.normal(0, 0.5, len(days))
        parts.append(pd.DataFrame({"unique_id": uid, "ds": days, "y": y, "price": 2.0, "promo": promo}))
    panel = pd.concat(parts, ignore_index=True)
    model = Linear.fit(panel, horizon=14)
    plain = model.predict(["low", "high"], 14, [0.05, 0.5, 0.95])
    assert plain.shape == (28, 2 + 1 + 3) and (plain["q0.05"] <= plain["q0.5"]).all() and (plain["q0.5"] <= plain["q0.95"]).all()
    for uid, level in (("low", 30.0), ("high", 60.0)):
        week = plain[plain["unique_id"] == uid].iloc[:7]
        shape = profile[week["ds"].dt.dayofweek]
        np.testing.assert_allclose(week["mean"] - week["mean"].mean(), shape - shape.mean(), atol=0.5)
        # One intercept for both series: each level is read from its lags, and drifts a little to the other's.
        assert abs(week["mean"].mean() - (level + profile.mean() + 6 * 0.15)) < 2
    ahead = pd.date_range(days[-1] + pd.Timedelta(days=1), periods=14)
    future = pd.DataFrame({"unique_id": "low", "ds": ahead, "promo": (np.arange(14) == 2).astype(float)})
    lifted = model.predict(["low"], 14, [0.5], future=future)["mean"].to_numpy()
    base = plain.loc[plain["unique_id"] == "low", "mean"].to_numpy()
    assert lifted[:2] == pytest.approx(base[:2]) and 5 < lifted[2] - base[2] < 7
    model.save(tmp_path)
    again = load(tmp_path).predict(["low", "high"], 14, [0.05, 0.5, 0.95])
    values = ["mean", "q0.05", "q0.5", "q0.95"]
    np.testing.assert_allclose(again[values], plain[values], rtol=1e-6, atol=1e-6)


def test_linear_forecasts_a_series_younger_than_its_longest_lag():
    """A product launched 10 days before the cutoff has no 14- or 28-day lag to forecast from (the grocery
    panel's launches stopped the bench with a NaN error); before its launch it sold nothing, so it is
    forecast from zeros there: finite, and below the old product's level of 20."""
    days = pd.date_range("2024-01-01", periods=120)
    old = pd.DataFrame({"unique_id": "old", "ds": days, "y": 20.0 + (days.dayofweek == 5) * 4.0})
    young = pd.DataFrame({"unique_id": "young", "ds": days[-10:], "y": 5.0})
    model = Linear.fit(pd.concat([old, young], ignore_index=True), horizon=7)
    out = model.predict(["old", "young"], 7, [0.05, 0.5, 0.95])
    assert np.isfinite(out[["mean", "q0.05", "q0.95"]].to_numpy()).all()
    assert out.loc[out["unique_id"] == "young", "mean"].max() < 20 - 1


def test_linear_reads_yesterdays_price_relative_to_the_series_median():
    """Prices 2, none, 4, 4, 8 are held as 2, 2, 4, 4, 8 (median 4): log relative prices log 1/2, log 1/2,
    0, 0, log 2, each read the day after (the first day at the median), by hand."""
    panel = pd.DataFrame(
        {"unique_id": "p", "ds": pd.date_range("2024-01-01", periods=5), "y": 1.0, "price": [2.0, np.nan, 4.0, 4.0, 8.0]}
    )
    price = Linear.frame(panel)["price"].to_numpy()
    np.testing.assert_allclose(price, [0.0, np.log(0.5), np.log(0.5), 0.0, 0.0])
    assert (Linear.frame(panel.drop(columns="price"))["price"] == 0).all()  # a panel without prices


def test_costly_candidates_sit_out_of_panels_above_their_cap():
    cfg = Config.model_validate({"selection": {"max_series": {"arima": 2, "auto_ets": 3}}})
    assert "arima" in candidates(cfg, 2) and "auto_ets" in candidates(cfg, 3)
    assert "arima" not in candidates(cfg, 3) and "auto_ets" in candidates(cfg, 3)
    assert {"arima", "auto_ets"}.isdisjoint(candidates(cfg, 4)) and "window_average" in candidates(cfg, 10**6)
    only = Config.model_validate({"selection": {"candidates": ["arima"], "max_series": {"arima": 2}}})
    with pytest.raises(DataError, match=r"sits out of a panel of 3 series \(selection.max_series.arima=2\)"):
        select(weekly_panel(days=90, n=3), only, ModelConfig())


def test_a_misspelt_cap_is_named_instead_of_capping_nothing():
    cfg = Config.model_validate({"selection": {"max_series": {"auto_etss": 0}}})
    with pytest.raises(ConfigError, match=r"selection.max_series has unknown names \['auto_etss'\]; choose from .*'auto_ets'"):
        candidates(cfg, 3)


def test_a_statistical_recipe_neither_selects_nor_loads_through_torch(tmp_path):
    """The families are imported only as far as a step needs them: a statistical model is selected, saved
    and loaded in a fresh interpreter without torch (which alone costs a pipeline step about 2 s)."""
    code = f"""
import sys
from conftest import weekly_panel
from supplyml.config import Config, ModelConfig
from supplyml.forecasting import load
from supplyml.forecasting.selection import select
cfg = Config.model_validate({{"features": {{"horizon": 7}}, "evaluation": {{"n_jobs": 1}},
                              "selection": {{"candidates": ["window_average", "seasonal_naive"], "origins": 2}}}})
model, evidence = select(weekly_panel(days=90, n=3), cfg, ModelConfig())
model.save({str(tmp_path)!r})
print(type(load({str(tmp_path)!r})).__name__, set(evidence["chosen"].split(" + ")) <= set(cfg.selection.candidates))
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["Combination", "True", "False"]


def test_an_unknown_candidate_is_named_with_every_familys_names_to_choose_from():
    cfg = Config.model_validate({"selection": {"candidates": ["window_average", "prophet"]}})
    with pytest.raises(ValueError, match=r"unknown names \['prophet'\]; choose from .*'network'.*'seasonal_naive'"):
        select(weekly_panel(days=90, n=3), cfg, ModelConfig())
