import numpy as np
import pandas as pd
import pytest

from supplyml.forecasting.metrics import (
    Actuals,
    bias,
    coverage,
    evaluate_forecasts,
    mase,
    pinball_loss,
    quantile_col,
    rmsse,
    scaled_pinball_loss,
    wrmsse,
    wspl,
)

TRAIN_A = [1.0, 2, 3, 4]  # one-step naive diffs 1, 1, 1: squared scale 1, absolute scale 1
TRAIN_B = [12.0, 10, 12, 10, 12]  # diffs -2, 2, -2, 2: squared scale 4, absolute scale 2


def test_quantile_col_names():
    assert [quantile_col(q) for q in (0.005, 0.025, 0.5, 0.835, 0.995)] == ["q0.005", "q0.025", "q0.5", "q0.835", "q0.995"]


def test_rmsse_and_mase_by_hand():
    # errors 0, 2 -> MSE (0 + 4) / 2 = 2, MAE 1
    assert rmsse([5, 7], [5, 5], TRAIN_A) == pytest.approx(np.sqrt(2))
    assert mase([5, 7], [5, 5], TRAIN_A) == pytest.approx(1.0)


def test_seasonal_scale():
    # season 2 on [0, 2, 4, 6, 8]: diffs 4, 4, 4 -> squared scale 16, absolute scale 4
    # errors 2, 4 -> MSE 10, MAE 3
    train = [0.0, 2, 4, 6, 8]
    assert rmsse([10, 12], [8, 8], train, season=2) == pytest.approx(np.sqrt(10 / 16))
    assert mase([10, 12], [8, 8], train, season=2) == pytest.approx(3 / 4)


def test_perfect_forecast_scores_zero():
    assert rmsse([5, 7], [5, 7], TRAIN_A) == 0
    assert mase([5, 7], [5, 7], TRAIN_A) == 0
    assert pinball_loss([5, 7], [5, 7], 0.9) == 0


def test_pinball_and_scaled_pinball_by_hand():
    # q=0.9, y - pred = 2, -3: under-forecast costs 0.9 * 2 = 1.8, over-forecast 0.1 * 3 = 0.3
    assert pinball_loss([10, 10], [8, 13], 0.9) == pytest.approx(1.05)
    # q=0.1 on the same predictions: 0.1 * 2 = 0.2, 0.9 * 3 = 2.7 -> 1.45; mean over q = 1.25, scale 1
    yq = np.array([[8, 8], [13, 13]])  # [day, quantile]
    assert scaled_pinball_loss([10, 10], yq, [0.1, 0.9], TRAIN_A) == pytest.approx(1.25)


def test_wrmsse_weights_by_recent_units():
    # Panel: A is shorter, so it is left-padded with NaN; both histories end on the same day.
    train = np.array([[np.nan, *TRAIN_A], TRAIN_B])
    y_true = np.array([[5, 7], [10, 14]])
    y_pred = np.array([[5, 5], [12, 12]])
    # RMSSE: A sqrt(2); B errors 2, 2 -> MSE 4 / scale 4 -> 1
    np.testing.assert_allclose(rmsse(y_true, y_pred, train), [np.sqrt(2), 1.0])
    # window 2: units A 3 + 4 = 7, B 10 + 12 = 22
    assert wrmsse(y_true, y_pred, train, window=2) == pytest.approx((7 * np.sqrt(2) + 22) / 29)
    # window 28 covers everything: A 10, B 56
    assert wrmsse(y_true, y_pred, train) == pytest.approx((10 * np.sqrt(2) + 56) / 66)
    assert wrmsse(y_true, y_true, train) == 0


def test_zero_scale_series_is_left_out():
    # C never changes: its scale is 0, so its scaled error is undefined (NaN), not inf.
    train = np.array([TRAIN_A, [5.0, 5, 5, 5]])
    y_true = np.array([[5, 7], [5, 6]])
    y_pred = np.array([[5, 5], [5, 5]])
    per_series = rmsse(y_true, y_pred, train)
    assert per_series[0] == pytest.approx(np.sqrt(2)) and np.isnan(per_series[1])
    # C's weight is dropped and A's renormalised to 1.
    assert wrmsse(y_true, y_pred, train) == pytest.approx(np.sqrt(2))
    yq = y_pred[..., None]
    assert wspl(y_true, yq, [0.5], train) == pytest.approx(0.5)  # 0.5 * MAE 1 / scale 1


def test_coverage_and_bias():
    assert coverage([1, 5, 9, np.nan], [0, 6, 0, 0], [2, 8, 9, 0]) == pytest.approx(2 / 3)
    # forecast 34 units against 36 sold: 2 / 36 under
    assert bias([[5, 7], [10, 14]], [[5, 5], [12, 12]]) == pytest.approx(-1 / 18)


def _frames():
    days = pd.date_range("2024-01-01", periods=5)
    train = pd.DataFrame(
        {
            "unique_id": ["A"] * 4 + ["B"] * 5,
            "ds": list(days[1:]) + list(days),
            "y": TRAIN_A + TRAIN_B,
        }
    )
    test_days = pd.date_range("2024-01-06", periods=2)
    test = pd.DataFrame({"unique_id": ["A", "A", "B", "B"], "ds": list(test_days) * 2, "y": [5.0, 7, 10, 14]})
    forecast = test[["unique_id", "ds"]].assign(
        mean=[5.0, 5, 12, 12],
        **{
            "q0.025": [0.0, 0, 0, 0],
            "q0.25": [4.0, 4, 11, 11],
            "q0.5": [5.0, 5, 12, 12],
            "q0.75": [6.0, 6, 13, 13],
            "q0.975": [100.0, 100, 100, 100],
        },
    )
    return train, test, forecast


def test_evaluate_forecasts_by_hand():
    train, test, forecast = _frames()
    # Shuffled rows must not matter.
    res = evaluate_forecasts(train.sample(frac=1, random_state=1), test, forecast.iloc[::-1], [0.025, 0.25, 0.5, 0.75, 0.975])
    assert res["wrmsse"] == pytest.approx((10 * np.sqrt(2) + 56) / 66)
    assert res["mase"] == pytest.approx(1.0)  # A: MAE 1 / 1, B: MAE 2 / 2
    # SPL A: pinball per q (0.025, 0.25, 0.5, 0.75, 0.975) = 0.15, 0.5, 0.5, 0.5, 2.35 -> 0.8 / scale 1
    # SPL B: 0.3, 0.75, 1.0, 0.75, 2.2 -> 1.0 / scale 2 = 0.5; weights 10 and 56
    assert res["wspl"] == pytest.approx((10 * 0.8 + 56 * 0.5) / 66)
    assert res["coverage_50"] == pytest.approx(0.25)  # only A's 5 lies in its [q0.25, q0.75]
    assert res["coverage_95"] == pytest.approx(1.0)
    assert res["bias"] == pytest.approx(-1 / 18)
    assert res["n_series"] == 2 and res["n_unscored"] == 0


def test_evaluate_forecasts_zero_scale_stays_finite():
    train, test, forecast = _frames()
    train.loc[train["unique_id"] == "A", "y"] = 3.0  # constant history
    res = evaluate_forecasts(train, test, forecast, [0.5])
    assert all(np.isfinite(v) for v in res.values())
    assert res["n_unscored"] == 1
    assert res["wrmsse"] == pytest.approx(1.0)  # only B left
    assert "coverage_50" not in res


def test_evaluate_forecasts_rejects_missing_forecasts():
    train, test, forecast = _frames()
    with pytest.raises(ValueError, match="no forecast"):
        evaluate_forecasts(train, test, forecast.iloc[:3], [0.5])
    with pytest.raises(ValueError, match="q0.9"):
        evaluate_forecasts(train, test, forecast, [0.9])


def test_actuals_score_each_forecast_of_one_origin_by_hand_and_name_series_without_history():
    train, test, forecast = _frames()
    actuals = Actuals(train, test)  # the history matrix is built once, then read by every forecast
    levels = [0.025, 0.25, 0.5, 0.75, 0.975]
    perfect = test[["unique_id", "ds"]].assign(mean=test["y"], **{quantile_col(q): test["y"] for q in levels})
    assert actuals.evaluate(forecast, levels)["wrmsse"] == pytest.approx((10 * np.sqrt(2) + 56) / 66)
    assert actuals.evaluate(perfect, levels)["wrmsse"] == 0.0
    units = actuals.series_scores(forecast)
    assert units["rmsse"].tolist() == pytest.approx([np.sqrt(2), 1.0])  # A: RMSE sqrt(2) / 1; B: 2 / 2
    assert units["weight"].tolist() == pytest.approx([10 / 66, 56 / 66])
    with pytest.raises(ValueError, match=r"1 test series have no training history, e.g. \['B'\]"):
        Actuals(train[train["unique_id"] == "A"], test)
