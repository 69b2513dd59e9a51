"""Models MLflow logged before their modules moved still load and answer: a forecaster from before the
forecasting modules moved (commit 4c911a5), a recommender from before its Lightning architectures left
`recommending.networks` (commit 838b02f). Registered versions keep their pickled pyfunc class and their
saved model kinds."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

LOGGED_BEFORE_THE_MOVE = Path(__file__).parent / "data" / "forecaster-before-move"
RECOMMENDER_BEFORE_THE_SPLIT = Path(__file__).parent / "data" / "recommender-before-split"


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


def test_a_recommender_logged_before_the_split_loads_and_ranks_what_it_did():
    # Logged by `tracking.log_recommender` at 838b02f: a Blend (bpr, dim 4, 1 epoch, repeat_slots 1) over
    # c1 buying A on 3 days and B on 1, c2 buying B on 1 day and C on 2. With one habit slot, each
    # customer's most-bought item comes first, scored 2 + its purchase days + its popularity scaled below 1.
    model = mlflow.pyfunc.load_model(str(RECOMMENDER_BEFORE_THE_SPLIT))
    out = model.predict(pd.DataFrame({"customer_id": ["c1", "c2"]}), params={"k": 3})
    first = out[out["rank"] == 1].set_index("customer_id")
    assert first["sku"].to_dict() == {"c1": "A", "c2": "C"}
    assert 5 < first.loc["c1", "score"] < 6 and 4 < first.loc["c2", "score"] < 5
    # The rest is the restored network's ranking and its scores (in [0, 1] after scaling), as the old code gave them:
    # a network left at its initial weights ranks them otherwise, or scores them differently.
    assert out.groupby("customer_id")["sku"].apply(list).to_dict() == {"c1": ["A", "C", "B"], "c2": ["C", "A", "B"]}
    rest = out[out["rank"] > 1].set_index(["customer_id", "sku"])["score"]
    expected = {("c1", "C"): 0.493695, ("c1", "B"): 0.0, ("c2", "A"): 1.0, ("c2", "B"): 0.0}
    assert rest.to_dict() == pytest.approx(expected, abs=1e-5)
