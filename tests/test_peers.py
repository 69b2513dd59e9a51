import numpy as np
import pandas as pd
import pytest

from supplyml.config import M5_QUANTILES
from supplyml.forecasting.metrics import quantile_col
from supplyml.forecasting.peers import BENCH_PEERS, DEFAULT_PEERS, forecast_peers

QCOLS = [quantile_col(q) for q in M5_QUANTILES]
END = pd.Timestamp("2024-03-31")


@pytest.fixture(scope="module")
def panel():
    # Weekly pattern plus Poisson noise; "c" is too short (40 days) for 2-window conformal intervals
    # at h=28 and so exercises the Gaussian fallback. "price" must be ignored, not taken as exogenous.
    rng = np.random.default_rng(0)
    parts = []
    for uid, n, level in [("a", 91, 5), ("b", 91, 1), ("c", 40, 3)]:
        ds = pd.date_range(end=END, periods=n)
        weekly = np.array([1, 1, 1, 2, 3, 4, 0])[ds.dayofweek]
        y = (level * weekly + rng.poisson(1, n)).astype(float)
        parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
    return pd.concat(parts, ignore_index=True).assign(price=1.0)


@pytest.fixture(scope="module")
def peers(panel):
    return forecast_peers(panel, horizon=28, quantiles=M5_QUANTILES)


def test_default_peers_in_order_without_the_bench_peer(peers):
    order = ["seasonal_naive", "auto_ets", "arima", "croston", "adida", "window_average"]
    assert list(DEFAULT_PEERS) == order and list(peers) == order
    assert list(BENCH_PEERS) == [*order, "lightgbm", "linear"]


def test_frames_cover_the_next_horizon_days(peers):
    future = pd.date_range(END + pd.Timedelta(days=1), periods=28)
    for fc in peers.values():
        assert list(fc.columns) == ["unique_id", "ds", "mean", *QCOLS]
        for uid in "abc":
            assert list(fc.loc[fc["unique_id"] == uid, "ds"]) == list(future)


def test_seasonal_naive_repeats_last_week(panel, peers):
    fc = peers["seasonal_naive"]
    for uid, g in panel.groupby("unique_id"):
        last_week = g["y"].to_numpy()[-7:]
        np.testing.assert_array_equal(fc.loc[fc["unique_id"] == uid, "mean"], np.tile(last_week, 4))


def test_window_average_is_mean_of_last_28_days(panel, peers):
    fc = peers["window_average"]
    for uid, g in panel.groupby("unique_id"):
        np.testing.assert_allclose(fc.loc[fc["unique_id"] == uid, "mean"], g["y"].to_numpy()[-28:].mean())


def test_quantiles_nonnegative_and_noncrossing(peers):
    for name, fc in peers.items():
        q = fc[QCOLS].to_numpy()
        assert np.isfinite(q).all(), name
        assert (q >= 0).all(), name
        assert (np.diff(q, axis=1) >= 0).all(), name
        # Intervals have width: the 99% band is wider than the 50% band somewhere.
        assert (fc["q0.995"] - fc["q0.005"] > fc["q0.75"] - fc["q0.25"]).any(), name


def test_subset_of_models_and_unknown_name(panel):
    only = forecast_peers(panel, horizon=7, quantiles=[0.25, 0.5, 0.75], models=("seasonal_naive",))
    assert list(only) == ["seasonal_naive"]
    assert list(only["seasonal_naive"].columns) == ["unique_id", "ds", "mean", "q0.25", "q0.5", "q0.75"]
    with pytest.raises(ValueError, match=r"unknown peers \['prophet'\]; choose from .*'adida'.*'lightgbm'"):
        forecast_peers(panel, horizon=7, quantiles=[0.5], models=("seasonal_naive", "prophet"))


def test_a_series_shorter_than_the_window_is_forecast_at_its_mean_with_a_gaussian_band(panel):
    # "a" keeps its 91 days; "b" keeps only its last 10, fewer than window_average's 28 (a product
    # launched lately): its mean, and mean +- z sd (ddof 0) of those 10 days, by hand.
    young = panel[(panel["unique_id"] == "b") & (panel["ds"] > END - pd.Timedelta(days=10))]
    both = pd.concat([panel[panel["unique_id"] == "a"], young], ignore_index=True)
    fc = forecast_peers(both, horizon=7, quantiles=[0.025, 0.5, 0.975], models=("window_average",))["window_average"]
    b = fc[fc["unique_id"] == "b"]
    y = young["y"].to_numpy()
    assert list(b["ds"]) == list(pd.date_range(END + pd.Timedelta(days=1), periods=7))
    assert b["mean"].to_numpy() == pytest.approx([y.mean()] * 7)
    assert b[quantile_col(0.975)].to_numpy() == pytest.approx([y.mean() + 1.959964 * y.std()] * 7, rel=1e-5)
    a = fc[fc["unique_id"] == "a"]  # the long series is untouched: the mean of its last 28 days
    assert a["mean"].to_numpy() == pytest.approx([panel[panel["unique_id"] == "a"]["y"].iloc[-28:].mean()] * 7)


def test_window_average_conformal_band_by_hand():
    # 32 days of 2 units except the last four: 4, 0, 2, 6. Horizon 2, two backtests:
    #   train days 0-27, mean 2, actual 4, 0 -> |errors| 2, 2
    #   train days 0-29, window days 2-29 mean (26*2 + 4 + 0) / 28 = 2, actual 2, 6 -> |errors| 0, 4
    # Pooled errors [0, 2, 2, 4]; "higher" quantiles: 50% -> 2, 95% -> 4.
    # Forecast: mean of days 4-31 = (24*2 + 4 + 0 + 2 + 6) / 28 = 15/7.
    y = [2.0] * 28 + [4, 0, 2, 6]
    df = pd.DataFrame({"unique_id": "x", "ds": pd.date_range("2024-01-01", periods=32), "y": y})
    fc = forecast_peers(df, horizon=2, quantiles=[0.025, 0.25, 0.5, 0.75, 0.975], models=("window_average",))
    row = fc["window_average"].iloc[0]
    mean = 15 / 7
    assert row["mean"] == pytest.approx(mean)
    assert row["q0.25"] == pytest.approx(mean - 2) and row["q0.75"] == pytest.approx(mean + 2)
    assert row["q0.025"] == 0 and row["q0.975"] == pytest.approx(mean + 4)  # mean - 4 clipped at 0
    assert row["q0.5"] == pytest.approx(mean)


def test_native_median_is_point_forecast(peers):
    for name in ("seasonal_naive", "auto_ets", "arima"):
        fc = peers[name]
        np.testing.assert_array_equal(fc["q0.5"], fc["mean"], err_msg=name)


def _series(uid, y, end=END):
    return pd.DataFrame({"unique_id": uid, "ds": pd.date_range(end=end, periods=len(y)), "y": np.asarray(y, float)})


def test_adida_and_auto_ets_forecast_a_constant_with_collapsed_quantiles():
    # A constant history has no error to spread: ADIDA's backtest errors are all 0 and AutoETS's
    # fitted residual variance is 0 up to its optimiser's tolerance, so every quantile is the constant.
    fc = forecast_peers(_series("k", [3.0] * 90), horizon=14, quantiles=M5_QUANTILES, models=("adida", "auto_ets"))
    np.testing.assert_allclose(fc["adida"][["mean", *QCOLS]], 3.0)
    np.testing.assert_allclose(fc["auto_ets"][["mean", *QCOLS]], 3.0, atol=1e-4)


def test_adida_by_hand_on_alternating_demand():
    # Demand 2, 0, 2, 0, ...: the mean interval between demands is 2 days, so ADIDA sums 2-day
    # buckets (always 2), SES on a constant 2 forecasts 2, spread over 2 days: 1 a day.
    # Every backtest day then misses by exactly 1, so the pooled band is 1 ± 1 at every level.
    fc = forecast_peers(_series("x", [2.0, 0.0] * 30), horizon=7, quantiles=[0.025, 0.25, 0.5, 0.75, 0.975], models=("adida",))[
        "adida"
    ]
    np.testing.assert_allclose(fc["mean"], 1.0)
    np.testing.assert_allclose(fc[["q0.025", "q0.25", "q0.5", "q0.75", "q0.975"]], [[0, 0, 1, 2, 2]] * 7)


# statsforecast divides by zero degrees of freedom for one candidate model on the 7-day series.
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_auto_ets_on_zero_heavy_intermittent_series():
    # Zero-heavy histories where AutoETS's additive models put the mean or the lower bounds below
    # zero (a single early spike is smoothed into a negative damped trend): no NaN, nothing < 0.
    rng = np.random.default_rng(3)
    df = pd.concat(
        [
            _series("zeros", np.zeros(120)),
            _series("spike_first", np.r_[5.0, np.zeros(99)]),
            _series("spike_last", np.r_[np.zeros(99), 5.0]),
            _series("sparse", rng.poisson(0.1, 200)),
            _series("lumpy", rng.poisson(40, 200) * (rng.random(200) < 0.2)),
            _series("short", [0, 0, 1, 0, 0, 0, 0]),  # the 7-day minimum
        ],
        ignore_index=True,
    )
    fc = forecast_peers(df, horizon=28, quantiles=M5_QUANTILES, models=("auto_ets",))["auto_ets"]
    assert len(fc) == 6 * 28
    values = fc[["mean", *QCOLS]].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all()
    assert (np.diff(fc[QCOLS].to_numpy(), axis=1) >= 0).all()
    np.testing.assert_array_equal(fc.loc[fc["unique_id"] == "zeros", ["mean", *QCOLS]], 0.0)
    # The sparse series' level is its demand rate, about 0.1 a day, and its 99.5% bound is above it.
    sparse = fc[fc["unique_id"] == "sparse"]
    assert 0.02 < sparse["mean"].iloc[0] < 0.3
    assert (sparse["q0.995"] > sparse["mean"]).all()


def test_auto_ets_forecasts_a_series_below_its_minimum_at_its_mean(panel):
    fc = forecast_peers(_series("tiny", [1, 0, 2, 0, 1, 3]), horizon=7, quantiles=[0.5], models=("auto_ets",))
    assert fc["auto_ets"]["mean"].to_numpy() == pytest.approx([7 / 6] * 7)  # 6 days < AutoETS's 7


def _ar1(uid: str, n: int, mu: float, phi: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = np.empty(n)
    y[0] = mu
    for t in range(1, n):
        y[t] = mu + phi * (y[t - 1] - mu) + rng.normal()
    return _series(uid, y)


def test_arima_forecasts_an_ar1_series_as_the_textbook_does():
    """On an AR(1) series (mean 20, phi 0.7, unit noise), AutoARIMA picks an AR(1) and forecasts as the
    textbook does with the least-squares estimates of the same data: mean mu + phi^h (y_T - mu), and
    95% band ±1.96 sigma sqrt((1 - phi^2h) / (1 - phi^2)), which widens to its stationary width."""
    df = _ar1("ar", 300, 20.0, 0.7, seed=3)
    fc = forecast_peers(df, horizon=14, quantiles=[0.025, 0.5, 0.975], models=("arima",))["arima"]
    y = df["y"].to_numpy()
    (c, phi), *_ = np.linalg.lstsq(np.c_[np.ones(len(y) - 1), y[:-1]], y[1:], rcond=None)
    mu, sigma = c / (1 - phi), np.std(y[1:] - c - phi * y[:-1], ddof=2)
    h = np.arange(1, 15)
    assert abs(y[-1] - mu) > 1 and 0.6 < phi < 0.8  # the decay is visible; the estimate is near the truth
    np.testing.assert_allclose(fc["mean"], mu + phi**h * (y[-1] - mu), atol=0.05)  # MLE against least squares
    width = (fc["q0.975"] - fc["q0.025"]).to_numpy()
    np.testing.assert_allclose(width, 2 * 1.96 * sigma * np.sqrt((1 - phi ** (2 * h)) / (1 - phi**2)), rtol=0.05)


def test_a_models_history_of_some_skus_is_their_rows_by_series_then_day(panel):
    from supplyml.forecasting import UnknownSeriesError
    from supplyml.forecasting.statistical import Statistical

    model = Statistical.fit(panel.sample(frac=1, random_state=0), "window_average", horizon=7)
    for skus in (["c"], ["c", "a"], ["b", "a", "c", "a"]):
        got = model.history_of(skus)
        # Recomputed from the raw panel: its rows of these series, sorted by series and day (91 + 40 + 91 rows).
        want = panel[panel["unique_id"].isin(skus)].sort_values(["unique_id", "ds"])
        assert len(got) == {1: 40, 2: 131, 3: 222}[len(set(skus))]
        assert got["unique_id"].tolist() == want["unique_id"].tolist()
        assert got["ds"].tolist() == want["ds"].tolist() and got["y"].tolist() == want["y"].tolist()
        # The frame the scan it replaced gave, index and columns included.
        pd.testing.assert_frame_equal(got, model.history[model.history["unique_id"].isin(skus)])
    with pytest.raises(UnknownSeriesError):
        model.history_of(["a", "nope"])
