"""A forecaster MLflow logged before the forecasting modules moved (commit 4c911a5) still loads and
forecasts: registered versions keep their pickled pyfunc class and their saved model kinds."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

LOGGED_BEFORE_THE_MOVE = Path(__file__).parent / "data" / "forecaster-before-move"


def test_a_forecaster_logged_before_the_move_loads_and_forecasts_what_it_did():
    # Logged by `tracking.log_forecaster` at 4c911a5: a combination of one window average (28 days)
    # over two series of 70 days, y = base + day % 7 (bases 2 and 5), quantiles [0.5], horizon 7.
    model = mlflow.pyfunc.load_model(str(LOGGED_BEFORE_THE_MOVE))
    out = model.predict(pd.DataFrame({"unique_id": ["A", "B"]}))
    # The last 28 days are four whole weeks, so the mean is base + mean(0..6) = base + 3 on every day.
    # The backtest errors, y - (base + 3), run -3..3 twice each: their median is 0, so q50 = mean.
    assert len(out) == 14
    by_sku = out.groupby("unique_id")
    assert np.allclose(by_sku["mean"].unique().explode().astype(float), [5.0, 8.0])
    assert np.allclose(out["mean"], out["q0.5"])
