"""The four networks on a small synthetic panel: shapes, quantile sanity, seeds, save/load."""

import numpy as np
import pandas as pd
import pytest

from supplyml.config import ModelConfig
from supplyml.forecasting import UnknownSeriesError, load
from supplyml.forecasting.metrics import quantile_col
from supplyml.forecasting.networks import MLP, VAELSTM, DeepAR, NetworkForecaster, Transformer

QUANTILES = [0.005, 0.025, 0.165, 0.25, 0.5, 0.75, 0.835, 0.975, 0.995]


@pytest.fixture(scope="module")
def panel():
    rng = np.random.default_rng(0)
    days = pd.date_range("2011-01-01", periods=150)
    weekly = np.array([1.0, 1.2, 1.4, 1.2, 1.0, 0.2, 0.6])
    frames = [
        pd.DataFrame(
            {"unique_id": f"S{i}", "ds": days, "y": rng.poisson(level * weekly[days.dayofweek]).astype(float), "price": 2.0}
        )
        for i, level in enumerate([0.5, 3, 20, 80])
    ]
    return pd.concat(frames, ignore_index=True)


def small(architecture: str, **settings) -> ModelConfig:
    """A network small enough to train in a second: 16 wide, one layer, 28 days of context."""
    return ModelConfig(architecture=architecture, hidden_size=16, num_layers=1, context_length=28, learning_rate=0.01, **settings)


@pytest.fixture(scope="module", params=["deepar", "mlp", "transformer", "vae_lstm"])
def forecaster(panel, request):
    params = small(request.param, max_epochs=6, batch_size=64, windows_per_series=32)
    fitted, trainer = NetworkForecaster.fit(panel, params, horizon=14, val_days=14, seed=1)
    assert type(fitted) is {"deepar": DeepAR, "mlp": MLP, "transformer": Transformer, "vae_lstm": VAELSTM}[request.param]
    assert np.isfinite(float(trainer.callback_metrics["val_loss"]))
    return fitted


def test_quantiles_are_non_negative_and_never_cross(forecaster):
    fc = forecaster.predict(None, 14, QUANTILES)
    q = fc[[quantile_col(x) for x in QUANTILES]].to_numpy()
    assert len(fc) == 4 * 14 and (q >= 0).all() and (fc["mean"] >= 0).all()
    assert (np.diff(q, axis=1) >= 0).all()
    assert fc["ds"].min() == pd.Timestamp("2011-05-31")  # the day after the history ends


def test_forecasts_follow_each_series_level(forecaster, panel):
    fc = forecaster.predict(None, 14, [0.5]).groupby("unique_id")["mean"].mean()
    actual = panel.groupby("unique_id")["y"].mean()
    assert fc["S0"] < fc["S1"] < fc["S2"] < fc["S3"]
    assert actual["S3"] / 2 < fc["S3"] < actual["S3"] * 2


def test_sample_paths_are_reproducible_counts(forecaster):
    a = forecaster.sample(["S1", "S2"], 10, 50, seed=7)
    assert a.shape == (2, 50, 10)
    np.testing.assert_array_equal(a, forecaster.sample(["S1", "S2"], 10, 50, seed=7))
    np.testing.assert_array_equal(a, np.round(a))


def test_unknown_series_is_named(forecaster):
    with pytest.raises(UnknownSeriesError, match="NOPE"):
        forecaster.sample(["S1", "NOPE"], 5, 10)


def test_with_history_returns_a_re_anchored_copy_and_leaves_the_model_as_it_was(forecaster, panel):
    before, history = forecaster.predict(None, 7, QUANTILES), forecaster.history
    earlier_days = panel[panel["ds"] < "2011-05-01"]
    earlier = forecaster.with_history(earlier_days)
    assert earlier is not forecaster and earlier.module is forecaster.module  # weights shared, not copied
    assert forecaster.history is history and forecaster.last_date == pd.Timestamp("2011-05-30")
    assert earlier.last_date == pd.Timestamp("2011-04-30")
    fc = earlier.predict(None, 7, QUANTILES)
    assert fc["ds"].min() == pd.Timestamp("2011-05-01")  # the day after the new history ends
    # The copy forecasts as a model built on that history does; the original's forecasts do not move.
    fresh = type(forecaster)(forecaster.module, earlier_days, forecaster.horizon, forecaster.num_samples, forecaster.seed)
    pd.testing.assert_frame_equal(fc, fresh.predict(None, 7, QUANTILES))
    assert not np.allclose(fc["mean"], before["mean"])
    pd.testing.assert_frame_equal(forecaster.predict(None, 7, QUANTILES), before)


def test_save_and_load_give_the_same_forecast(forecaster, tmp_path):
    forecaster.save(tmp_path)
    loaded = load(tmp_path)
    assert type(loaded) is type(forecaster)
    pd.testing.assert_frame_equal(forecaster.predict(None, 7, QUANTILES), loaded.predict(None, 7, QUANTILES))


def test_horizons_beyond_the_trained_one_continue_each_path(forecaster):
    paths = forecaster.sample(["S2"], 30, 40, seed=1)  # trained for 14 days
    assert paths.shape == (1, 40, 30) and np.isfinite(paths).all()
    assert 20 / 3 < paths[0, :, 14:].mean() < 20 * 3  # the second block keeps the series' level


def test_mlp_marginals_are_exact_and_match_its_sample_paths(forecaster):
    if not isinstance(forecaster, MLP):  # DeepAR's marginals exist only through its paths
        assert not hasattr(forecaster, "distribution")
        return
    mu, _ = forecaster.distribution(forecaster.arrays, forecaster.check_skus(["S3"]), 14)
    paths = forecaster.sample(["S3"], 14, 4000, seed=2)
    np.testing.assert_allclose(paths[0].mean(axis=0), mu[0], rtol=0.1)
    fc = forecaster.predict(["S3"], 14, [0.5])
    np.testing.assert_allclose(fc["mean"], mu[0])


def test_known_promotions_reach_the_forecast(forecaster):
    days = pd.date_range(forecaster.last_date + pd.Timedelta(days=1), periods=7)
    future = pd.DataFrame({"unique_id": "S3", "ds": days, "promo": 1.0, "event": 0.0})
    with_promo = forecaster.predict(["S3"], 7, [0.5], future=future)
    plain = forecaster.predict(["S3"], 7, [0.5])
    assert not np.allclose(with_promo["mean"], plain["mean"])


def test_path_correlation_widens_multi_day_totals_but_not_single_days(forecaster, monkeypatch):
    draws = {}
    for rho in (0.0, 0.8):
        monkeypatch.setattr(forecaster.calibration, "rho", rho)
        draws[rho] = forecaster.sample(["S3"], 14, 4000, seed=5)[0]
    if not isinstance(forecaster, MLP):  # DeepAR's paths carry their own dependence; rho is not used
        np.testing.assert_array_equal(draws[0.0], draws[0.8])
        return
    np.testing.assert_allclose(draws[0.0].mean(axis=0), draws[0.8].mean(axis=0), rtol=0.1)
    np.testing.assert_allclose(draws[0.0].std(axis=0), draws[0.8].std(axis=0), rtol=0.15)
    # Equicorrelated days: Var(total) ~ sum of variances x (1 + 13 rho); ratio well above 2 at rho 0.8.
    assert draws[0.8].sum(axis=1).var() > 2 * draws[0.0].sum(axis=1).var()


def test_a_shorter_request_forecasts_the_same_first_days(forecaster):
    """Order-up-to levels read L + R days, daily calibration and metrics the whole horizon: a day's
    forecast may not depend on how many days were asked for (the MLP once padded the rest with zeros)."""
    future = pd.DataFrame({"unique_id": "S3", "ds": forecaster.forecast_dates(14), "promo": 1.0, "event": 0.0})
    cols = ["mean", *(quantile_col(x) for x in QUANTILES)]
    short = forecaster.predict(None, 5, QUANTILES, future=future).reset_index(drop=True)
    full = forecaster.predict(None, 14, QUANTILES, future=future)
    full = full[full["ds"] <= short["ds"].max()].reset_index(drop=True)
    assert len(short) == len(full) == 4 * 5
    np.testing.assert_allclose(short[cols], full[cols], rtol=1e-5)


@pytest.mark.parametrize("architecture", ["transformer", "vae_lstm"])
def test_the_new_networks_tell_two_weekly_profiles_apart(architecture):
    """Two planted patterns at one level: a weekend peak and a midweek peak. Each series' 7-day forecast
    follows its own profile, not the other's (correlation > 0.6 with its own, < 0 with the other: a forecast
    that ignored which series it was given could not do both for both series). The VAE-LSTM logs its
    ELBO beside its validation loss."""
    rng = np.random.default_rng(4)
    days = pd.date_range("2011-01-01", periods=150)
    profiles = {"weekend": np.array([2, 2, 2, 2, 4, 12, 12.0]), "midweek": np.array([4, 10, 12, 10, 4, 2, 2.0])}
    panel = pd.concat(
        [
            pd.DataFrame({"unique_id": uid, "ds": days, "y": rng.poisson(p[days.dayofweek]).astype(float)})
            for uid, p in profiles.items()
        ],
        ignore_index=True,
    )
    params = small(architecture, max_epochs=20, batch_size=32, windows_per_series=256, swa_start=1)
    model, trainer = NetworkForecaster.fit(panel, params, horizon=7, val_days=7, seed=0)
    if architecture == "vae_lstm":
        # The ELBO is the 7 days' log-likelihood less a KL divergence (>= 0): per day, at most -val_loss.
        elbo, loss = float(trainer.callback_metrics["val_elbo"]), float(trainer.callback_metrics["val_loss"])
        assert np.isfinite(elbo) and elbo / 7 <= -loss + 1e-4
    fc = model.predict(None, 7, [0.5])
    for uid, own in profiles.items():
        rows = fc[fc["unique_id"] == uid]
        other = profiles["midweek" if uid == "weekend" else "weekend"]
        mean, dow = rows["mean"].to_numpy(), rows["ds"].dt.dayofweek.to_numpy()
        assert np.corrcoef(mean, own[dow])[0, 1] > 0.6 and np.corrcoef(mean, other[dow])[0, 1] < 0, (uid, mean)


def test_a_vae_lstm_trial_logs_its_elbo_in_its_mlflow_run(panel, tmp_path):
    """The tuning trial's nested run carries the ELBO beside the objective, read back from the store."""
    import mlflow

    from supplyml import tune
    from supplyml.config import load_config
    from supplyml.forecasting.search import ForecastSearch
    from supplyml.tracking import setup_tracking

    cfg = load_config(
        overrides=[
            f"workdir={tmp_path}",
            "tune.n_trials=1",
            "tune.max_epochs=1",
            "tune.search_space.architecture=[vae_lstm]",
            "tune.search_space.context_length=[28]",
            "model.architecture=vae_lstm",  # the configured network is the first trial
            "model.hidden_size=16",
            "model.context_length=28",
            "features.horizon=7",
            "features.val_days=7",
        ]
    )
    setup_tracking(cfg)
    with mlflow.start_run(run_name="tune") as parent:
        tune.tune(ForecastSearch(panel, cfg, "md5-of-this-panel"), cfg, {})
    (trial,) = mlflow.MlflowClient().search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert trial.data.params["architecture"] == "vae_lstm"
    elbo, loss = trial.data.metrics["val_elbo"], trial.data.metrics["val_loss"]
    assert np.isfinite(elbo) and elbo / 7 <= -loss + 1e-4  # 7 days' log-likelihood less a KL divergence
