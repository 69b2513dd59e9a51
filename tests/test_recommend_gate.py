"""The recommender's gate on a real MLflow store: the challenger and the champion's recipe refitted on the
same days before the test window, judged on NDCG@10 by hand-computed figures."""

import json
import math

import mlflow
import pandas as pd
import pytest

from supplyml.config import load_config
from supplyml.recommending import lifecycle
from supplyml.recommending.interactions import split, windows
from supplyml.recommending.peers import Popularity
from supplyml.registry import register
from supplyml.tracking import log_recommender, setup_tracking

# Day 1: u1 buys a, u2 b; day 2: u1 a and b, u3 b; day 3 (validation): u3 c; day 4 (test): u1 a, u2 c.
ROWS = [
    ("u1", "a", 1),
    ("u2", "b", 1),
    ("u1", "a", 2),
    ("u1", "b", 2),
    ("u3", "b", 2),
    ("u3", "c", 3),
    ("u1", "a", 4),
    ("u2", "c", 4),
]
FRAME = pd.DataFrame(
    {
        "customer_id": [r[0] for r in ROWS],
        "sku": [r[1] for r in ROWS],
        "ds": [pd.Timestamp("2011-01-01") + pd.Timedelta(days=r[2] - 1) for r in ROWS],
        "quantity": 1.0,
        "value": 1.0,
    }
)
# Popularity (distinct buyers of days 1-3): b 3, then a and c 1 each, a first (catalogue order): b a c.
#   u1 (bought a in the test window): a at rank 2 -> 1/log2(3); u2 (c): rank 3 -> 1/log2(4) = 0.5.
POPULARITY = (1 / math.log2(3) + 0.5) / 2
# Personal frequency: u1 bought a on 2 days, b on 1 -> a b c: a at rank 1 -> 1; u2: b a c -> 0.5.
REPEAT = (1 + 0.5) / 2


@pytest.fixture
def cfg(tmp_path):
    cfg = load_config(
        overrides=[
            f"registry.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            f"registry.artifact_location={tmp_path}/art",
            "recommend.test_days=1",
            "recommend.val_days=1",
            "recommend.report_peers=[popularity]",
            "features.test_origins=1",
        ]
    )
    setup_tracking(cfg)
    return cfg


def champion(cfg, recipe: dict) -> None:
    with mlflow.start_run():
        uri = log_recommender(Popularity().fit(FRAME, ["a", "b", "c"]), cfg)
    version = register(uri, cfg.registry.recommender_name, {lifecycle.RECIPE_TAG: json.dumps(recipe)})
    mlflow.MlflowClient().set_registered_model_alias(cfg.registry.recommender_name, "champion", version.version)


def judged(cfg, challenger: dict):
    data = split(cfg, FRAME)
    model = lifecycle.fit(challenger, data.fit, {})
    table = lifecycle.peer_table(cfg, data, model)
    return table, lifecycle.judge(cfg, [data], table, challenger, {}, model)


REPEAT_RECIPE = {"model": "repeat", "params": {"popularity_days": 28}}
POPULARITY_RECIPE = {"model": "popularity", "params": {"popularity_days": 28}}


def test_without_a_champion_the_challenger_must_beat_popularity(cfg):
    table, verdict = judged(cfg, REPEAT_RECIPE)
    assert table.loc["model", "ndcg@10/all"] == pytest.approx(REPEAT)
    assert table.loc["popularity", "ndcg@10/all"] == pytest.approx(POPULARITY)
    assert verdict.promote and verdict.champion is None
    assert verdict.challenger["ndcg_gap_to_popularity"] == pytest.approx(REPEAT - POPULARITY)


def test_two_customers_are_not_evidence_enough_to_replace_the_champion(cfg):
    champion(cfg, POPULARITY_RECIPE)
    _, verdict = judged(cfg, REPEAT_RECIPE)
    assert verdict.champion == {"ndcg@10": pytest.approx(POPULARITY)} and verdict.champion_version == "1"
    # Better for both customers (1 > 1/log2(3), 0.5 = 0.5), but 2 customers allow no p-value below 1/4.
    ndcg = verdict.evidence[0]
    assert ndcg["difference"] == pytest.approx(REPEAT - POPULARITY) and ndcg["p_better"] == pytest.approx(0.5)
    assert not verdict.promote and "no significant difference in ndcg@10" in verdict.reasons[2]


# Thirty customers, each buying their own SKU on days 1 and 2 and the popular "p" on day 1; the test day
# (4) repeats their own SKU. Personal frequency ranks it first (NDCG 1 for each); popularity ranks p
# first, then the thirty own SKUs (one buyer each) in catalogue order, so most fall outside the top 10.
MANY = pd.DataFrame(
    [(f"u{i:02d}", f"s{i:02d}", d) for i in range(30) for d in (1, 2)]
    + [(f"u{i:02d}", "p", 1) for i in range(30)]
    + [("u00", "s00", 3)]
    + [(f"u{i:02d}", f"s{i:02d}", 4) for i in range(30)],
    columns=["customer_id", "sku", "day"],
)
MANY = MANY.assign(ds=pd.Timestamp("2011-01-01") + pd.to_timedelta(MANY.pop("day") - 1, unit="D"), quantity=1.0, value=1.0)


def _judged_many(cfg, challenger):
    data = split(cfg, MANY)
    model = lifecycle.fit(challenger, data.fit, {})
    table = lifecycle.peer_table(cfg, data, model)
    return table, lifecycle.judge(cfg, [data], table, challenger, {}, model)


def test_a_clearly_better_challenger_is_promoted_and_a_worse_one_keeps_the_champion(cfg):
    champion(cfg, POPULARITY_RECIPE)
    table, verdict = _judged_many(cfg, REPEAT_RECIPE)
    assert table.loc["model", "ndcg@10/all"] == pytest.approx(1.0)
    ndcg = verdict.evidence[0]
    assert ndcg["blocks"] == 30 and ndcg["champion"] == pytest.approx(table.loc["popularity", "ndcg@10/all"])
    assert verdict.promote and ndcg["p_better"] < 0.05 and ndcg["low"] > 0

    mlflow.MlflowClient().delete_registered_model_alias(cfg.registry.recommender_name, "champion")
    champion(cfg, REPEAT_RECIPE)
    _, verdict = _judged_many(cfg, POPULARITY_RECIPE)
    assert not verdict.promote and "ndcg@10 significantly worse than the champion" in verdict.reasons[2]


def test_the_same_recipe_again_is_no_significant_difference(cfg):
    champion(cfg, REPEAT_RECIPE)
    _, verdict = _judged_many(cfg, REPEAT_RECIPE)
    assert verdict.evidence[0]["difference"] == 0 and not verdict.promote
    assert "no significant difference in ndcg@10 from the champion" in verdict.reasons[2]


def test_the_owner_lists_and_rolls_back_the_recommender_from_the_cli(cfg, tmp_path):
    from conftest import supplyml

    from supplyml import registry

    name = cfg.registry.recommender_name
    for n, recipe in enumerate((POPULARITY_RECIPE, REPEAT_RECIPE), 1):
        with mlflow.start_run():
            uri = log_recommender(Popularity().fit(FRAME, ["a", "b", "c"]), cfg)
        register(uri, name, {lifecycle.RECIPE_TAG: json.dumps(recipe), "metrics": json.dumps({"ndcg@10/all": n / 10})})
        registry.move_champion(
            name,
            str(n),
            expected=None if n == 1 else "1",
            action="promote",
            by="test",
            why="passed the gate",
            figures=None,
            lock=tmp_path / "lock",
        )
    sets = ["--set", f"registry.tracking_uri={cfg.registry.tracking_uri}", "--set", f"workdir={tmp_path}"]

    def cli(*args):
        return supplyml("model", *args, "--family", "recommend", *sets)

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "ndcg@10/all" in listed.stdout and "champion" in listed.stdout.splitlines()[2]  # v2, newest first
    back = cli("rollback", "--reason", "bad week")
    assert back.returncode == 0, back.stderr
    assert "version 1 of supplyml-recommender is champion again (was 2)" in back.stdout
    assert str(registry.champion_version(name).version) == "1"
    refused = cli("promote", "2")
    assert refused.returncode == 2 and "judged by the pipeline's gate" in refused.stderr


def test_the_held_out_windows_roll_back_from_the_data_end(cfg):
    # MANY spans days 1..4; two windows of one day: the last on day 4 (fitted on days 1-3), the one
    # before on day 3 (fitted on days 1-2), each with the day before it for validation.
    two = cfg.model_copy(update={"features": cfg.features.model_copy(update={"test_origins": 2})})
    first, last = windows(two, MANY)
    assert [str(w.test_start.date()) for w in (first, last)] == ["2011-01-03", "2011-01-04"]
    assert str(first.val_start.date()) == "2011-01-02" and first.fit["ds"].max() == pd.Timestamp("2011-01-02")
    assert set(first.test["customer_id"]) == {"u00"} and len(last.test) == 30
    champion(cfg, POPULARITY_RECIPE)
    model = lifecycle.fit(REPEAT_RECIPE, last.fit, {})
    verdict = lifecycle.judge(two, [first, last], lifecycle.peer_table(two, last, model), REPEAT_RECIPE, {}, model)
    ndcg = verdict.evidence[0]
    assert [o["origin"] for o in ndcg["per_origin"]] == ["2011-01-03", "2011-01-04"] and ndcg["units"] == 31
