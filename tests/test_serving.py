"""The forecasting and replenishment endpoints of the serving stack's Bento (tests/serving_stack.py), over
loopback HTTP."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import requests
from serving_stack import ITEM, LINEAGE, MAX_HORIZON, METRICS, SKUS, post, store_args

pytestmark = pytest.mark.slow


def test_forecast_gives_dates_mean_and_ordered_quantiles(url, panel):
    r = post(url, "forecast", {"skus": SKUS[:2], "horizon": 14, "quantiles": [0.9, 0.1, 0.5]})
    assert r.status_code == 200, r.text
    forecasts = r.json()["forecasts"]
    assert [f["sku"] for f in forecasts] == SKUS[:2]
    first = panel["ds"].max() + pd.Timedelta(days=1)
    for f in forecasts:
        assert f["dates"] == [d.date().isoformat() for d in pd.date_range(first, periods=14)]
        q = np.array([f["quantiles"][k] for k in ("0.1", "0.5", "0.9")])
        assert q.shape == (3, 14) and (q >= 0).all() and (np.diff(q, axis=0) >= 0).all()
        assert len(f["mean"]) == 14 and min(f["mean"]) >= 0


def test_forecast_defaults_to_a_90_percent_band(url):
    r = post(url, "forecast", {"skus": [SKUS[0]], "horizon": 1})
    assert r.status_code == 200 and set(r.json()["forecasts"][0]["quantiles"]) == {"0.05", "0.5", "0.95"}


def test_replenish_is_a_base_stock_decision(url):
    items = [
        {"sku": SKUS[3], "on_hand": 40, "on_order": 10, "lead_time_days": 7, "review_period_days": 7, "service_level": level}
        for level in (0.8, 0.95, 0.99)
    ]
    items.append({"sku": SKUS[5], "on_hand": 0, "lead_time_days": 0, "review_period_days": 3, "service_level": 0.9})
    r = post(url, "replenish", {"items": items})
    assert r.status_code == 200, r.text
    decisions = r.json()["decisions"]
    assert [d["sku"] for d in decisions] == [i["sku"] for i in items]
    for item, d in zip(items, decisions):
        position = item["on_hand"] + item.get("on_order", 0)
        assert d["order_quantity"] == pytest.approx(max(0.0, d["order_up_to"] - position), abs=1e-3)
        assert d["safety_stock"] == pytest.approx(d["order_up_to"] - d["expected_demand"], abs=1e-3)
        assert d["expected_demand"] > 0 and d["reorder_point"] <= d["order_up_to"]
    assert decisions[0]["order_up_to"] <= decisions[1]["order_up_to"] <= decisions[2]["order_up_to"]


def test_an_item_may_ask_for_the_classical_policy(url, panel):
    item = {
        "sku": SKUS[4],
        "on_hand": 30,
        "on_order": 5,
        "lead_time_days": 4,
        "review_period_days": 7,
        "service_level": 0.95,
        "policy": "classical",
    }
    r = post(url, "replenish", {"items": [item]})
    assert r.status_code == 200, r.text
    (d,) = r.json()["decisions"]
    # By hand from the panel: the SKU's last 28 days, S = 11 mu + z sigma sqrt(11), z = 1.644854.
    recent = panel[panel["unique_id"] == SKUS[4]].sort_values("ds")["y"].to_numpy()[-28:]
    level = 11 * recent.mean() + 1.644854 * recent.std() * np.sqrt(11)
    assert d["policy"] == "classical" and d["order_up_to"] == pytest.approx(level, abs=1e-3)
    assert d["order_quantity"] == pytest.approx(max(0.0, level - 35), abs=1e-3)
    # A Bento whose forecaster version chose no textbook policy (registered by hand) defaults to base stock.
    assert requests.get(f"{url}/metadata", timeout=30).json()["default_policy"] == "base_stock"


def test_metadata_names_model_data_and_metrics(url, bento, panel, cfg):
    import bentoml

    r = requests.get(f"{url}/metadata", timeout=30)
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["model_name"] == "supplyml-forecaster" and meta["model_version"] == "1"
    assert {k: meta[k] for k in LINEAGE} == LINEAGE and meta["metrics"] == METRICS
    assert meta["bento"] == bento and meta["bento_model"].startswith("supplyml-forecaster:")
    # How answers are computed is the Bento's, pinned from the packaging config (serving_stack's: horizon
    # 30, 200 paths), in its arguments; no model's metadata carries it.
    settings = {"max_horizon": 30, "replenish_samples": 200, "seed": cfg.seed}
    assert {k: meta[k] for k in settings} == settings == {k: bentoml.bentos.get(bento).info.args[k] for k in settings}
    assert not settings.keys() & bentoml.models.get(meta["bento_model"]).info.metadata.keys()
    assert meta["skus"] == SKUS and meta["history_end"] == panel["ds"].max().date().isoformat()


@pytest.mark.parametrize(
    "path, payload, field",
    [
        ("forecast", {"skus": [], "horizon": 7}, "skus"),
        ("forecast", {"horizon": 7}, "skus"),
        ("forecast", {"skus": [SKUS[0]], "horizon": 0}, "horizon"),
        ("forecast", {"skus": [SKUS[0]], "horizon": MAX_HORIZON + 1}, "horizon"),
        ("forecast", {"skus": [SKUS[0]], "horizon": "soon"}, "horizon"),
        ("forecast", {"skus": [SKUS[0]], "horizon": 7, "quantiles": [0.5, 1.5]}, "quantiles"),
        ("replenish", {"items": [{**ITEM, "on_hand": -1}]}, "on_hand"),
        ("replenish", {"items": [{**ITEM, "on_hand": "ten"}]}, "on_hand"),
        ("replenish", {"items": [{**ITEM, "on_order": -0.5}]}, "on_order"),
        ("replenish", {"items": [{**ITEM, "service_level": 1.5}]}, "service_level"),
        ("replenish", {"items": [{**ITEM, "service_level": 0}]}, "service_level"),
        ("replenish", {"items": [{**ITEM, "lead_time_days": -2}]}, "lead_time_days"),
        ("replenish", {"items": [{**ITEM, "lead_time_days": 2.5}]}, "lead_time_days"),
        ("replenish", {"items": [{**ITEM, "review_period_days": 0}]}, "review_period_days"),
        ("replenish", {"items": [{**ITEM, "lead_time_days": 20, "review_period_days": 20}]}, "lead_time_days"),
        ("replenish", {"items": [{k: v for k, v in ITEM.items() if k != "sku"}]}, "sku"),
        ("replenish", {"items": []}, "items"),
        ("replenish", {}, "items"),
        ("forecast", {"skus": [SKUS[0]], "horizon": "7"}, "horizon"),  # strict: the schema's integer, not a string
        ("forecast", {"skus": [SKUS[0]], "horizon": 3, "event": {SKUS[0]: [2]}}, "event"),
        ("forecast", {"skus": [SKUS[0]], "horizon": 3, "promo": [1, 0]}, "promo"),
        ("replenish", {"items": [{**ITEM, "event": [0.5]}]}, "event"),
        ("forecast", {"skus": [SKUS[0]], "horizon": 3, "promotions": {SKUS[0]: [1]}}, "promotions"),  # a misspelt field
        ("replenish", {"items": [{**ITEM, "onhand": 5}]}, "onhand"),
    ],
)
def test_bad_requests_get_a_400_naming_the_field(url, path, payload, field):
    r = post(url, path, payload)
    assert r.status_code == 400, r.text
    assert any(field in map(str, d["loc"]) or field in d["msg"] for d in r.json()["detail"]), r.text


def test_a_promotion_calendar_may_hold_more_than_is_asked(url):
    """Flags of SKUs not asked about and days past the horizon are not used (the document says so; it
    cannot state a rule between fields): the answer is the one to the trimmed request."""
    asked = {"skus": [SKUS[2]], "horizon": 3, "promo": {SKUS[2]: [0, 1, 1]}}
    calendar = {**asked, "promo": {SKUS[2]: [0, 1, 1, 1, 0, 1], SKUS[4]: [1, 1], "NOT-A-SKU": [1]}}
    assert post(url, "forecast", calendar).json() == post(url, "forecast", asked).json()
    assert post(url, "forecast", asked).json() != post(url, "forecast", {**asked, "promo": {}}).json()
    item = {**ITEM, "sku": SKUS[2], "promo": [1] * 10}  # L + R = 10
    long = {**item, "promo": [1] * 10 + [0, 1, 1]}
    assert post(url, "replenish", {"items": [long]}).json() == post(url, "replenish", {"items": [item]}).json()


def test_flags_the_model_was_not_trained_with_are_refused(url):
    refusal = "this model was trained without event flags (its data had none), so it cannot use them; send no event days set to 1"
    cases = [
        ("forecast", {"skus": [SKUS[0]], "horizon": 3, "event": {SKUS[0]: [0, 1]}}, ["event", SKUS[0], 1]),
        ("replenish", {"items": [{**ITEM, "event": [1]}]}, ["items", 0, "event", 0]),
    ]
    for path, payload, loc in cases:
        r = post(url, path, payload)
        assert r.status_code == 400, r.text
        assert [(d["loc"], d["msg"]) for d in r.json()["detail"]] == [(loc, f"Value error, {refusal}")]
    assert post(url, "forecast", {"skus": [SKUS[0]], "horizon": 3, "event": {SKUS[0]: [0, 0]}}).status_code == 200


def test_unknown_skus_get_a_404_saying_where(url):
    r = post(url, "forecast", {"skus": [SKUS[0], "NO-SUCH-SKU"], "horizon": 7})
    assert r.status_code == 404, r.text
    assert [(d["loc"], "NO-SUCH-SKU" in d["msg"]) for d in r.json()["detail"]] == [(["skus", 1], True)]
    r = post(url, "replenish", {"items": [ITEM, {**ITEM, "sku": "NO-SUCH-SKU"}]})
    assert r.status_code == 404, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [["items", 1, "sku"]]


@pytest.mark.parametrize("body", ["not json", '{"skus": ' + "[" * 5000 + "]" * 5000 + "}", "[" * 5000])
@pytest.mark.parametrize("path", ["forecast", "replenish", "recommend", "similar"])
def test_malformed_json_is_a_400_naming_the_body(url, path, body):
    # 5,000-deep nesting once reached json.loads and was a RecursionError: a 500.
    r = requests.post(f"{url}/{path}", data=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    assert [(d["type"], d["loc"]) for d in r.json()["detail"]] == [("json_invalid", ["body"])]


def test_a_body_not_sent_as_json_is_a_415_naming_the_header(url):
    r = requests.post(f"{url}/forecast", data={"skus": SKUS[0], "horizon": 3}, timeout=30)  # form-encoded, as curl -d
    assert r.status_code == 415, r.text
    assert r.json()["detail"] == [
        {
            "type": "media_type",
            "loc": ["header", "Content-Type"],
            "msg": "send Content-Type: application/json, not 'application/x-www-form-urlencoded'",
        }
    ]


LINEAGE_HEADERS = {
    "X-Supplyml-Model": "supplyml-forecaster",
    "X-Supplyml-Model-Version": "1",
    "X-Supplyml-Data-Md5": LINEAGE["dvc_md5"],
}


def test_every_answer_names_the_model_version_and_data(url):
    answers = [
        post(url, "forecast", {"skus": [SKUS[0]], "horizon": 3}),
        post(url, "replenish", {"items": [ITEM]}),
        requests.get(f"{url}/metadata", timeout=30),
        requests.get(f"{url}/docs.json", timeout=30),
        post(url, "forecast", {"skus": ["NO-SUCH-SKU"], "horizon": 3}),
        post(url, "forecast", {"skus": [SKUS[0]], "horizon": 0}),
    ]
    assert [r.status_code for r in answers] == [200, 200, 200, 200, 404, 400]
    for r in answers:
        assert {k: r.headers.get(k) for k in LINEAGE_HEADERS} == LINEAGE_HEADERS, r.url


def test_too_many_skus_or_items_is_a_422_naming_the_limit(url):
    r = post(url, "forecast", {"skus": SKUS * 200, "horizon": 2})
    assert r.status_code == 422, r.text
    assert r.json() == {
        "error": "too many skus",
        "detail": [{"type": "too_many", "loc": ["skus"], "msg": "1200 skus exceed serving.max_skus = 1000; split the request"}],
    }
    r = post(url, "replenish", {"items": [ITEM] * 1001})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["msg"] == "1001 items exceed serving.max_items = 1000; split the request"
    r = post(url, "forecast", {"skus": (SKUS * 200)[:1000], "horizon": 2})  # at the cap: answered
    assert r.status_code == 200, r.text
    assert [f["sku"] for f in r.json()["forecasts"]] == (SKUS * 200)[:1000]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_size_cap_is_a_413_naming_it(url, chunked):
    body = json.dumps({"skus": [SKUS[0]], "horizon": 2, "note": "x" * 1_100_000}).encode()
    data = (body[i : i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    r = requests.post(f"{url}/forecast", data=data, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == [
        {"type": "too_large", "loc": ["body"], "msg": "the body exceeds serving.max_body_bytes = 1048576 bytes"}
    ]
    # Under the cap the same body is read, and its unknown field refused by name (a size is no excuse).
    small = json.dumps({"skus": [SKUS[0]], "horizon": 2, "note": "x" * 1000}).encode()
    r = requests.post(f"{url}/forecast", data=small, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 400 and [d["loc"] for d in r.json()["detail"]] == [["note"]], r.text


def test_known_promotions_reach_the_model_per_sku(url):
    plain = post(url, "forecast", {"skus": SKUS[2:4], "horizon": 7}).json()["forecasts"]
    flagged = post(url, "forecast", {"skus": SKUS[2:4], "horizon": 7, "promo": {SKUS[2]: [1] * 7}}).json()["forecasts"]
    assert flagged[0]["mean"] != plain[0]["mean"] and flagged[1] == plain[1]
    zeros = post(url, "forecast", {"skus": SKUS[2:4], "horizon": 7, "promo": {SKUS[2]: [0, 0]}}).json()["forecasts"]
    assert zeros == plain  # days not given, like zeros, are days without promotion
    plain, flagged = (
        post(url, "replenish", {"items": [{**ITEM, "sku": SKUS[4], **extra}]}).json()["decisions"][0]
        for extra in ({}, {"promo": [1] * 10})
    )
    assert flagged["expected_demand"] != plain["expected_demand"]


def _leaves(tree, path=""):
    """(path, value) for every leaf of a JSON answer, in order."""
    if isinstance(tree, dict):
        return [leaf for k, v in tree.items() for leaf in _leaves(v, f"{path}/{k}")]
    if isinstance(tree, list):
        return [leaf for i, v in enumerate(tree) for leaf in _leaves(v, f"{path}/{i}")]
    return [(path, tree)]


def test_concurrent_requests_get_the_answers_they_get_alone(url):
    # Batched together (serving.batching is on by default), each must still get its own answer: mixed horizons
    # and levels, one SKU with and without promotions, and an unknown SKU that must not fail the others.
    bodies = [
        {
            "skus": [SKUS[i % 6]],
            "horizon": 3 + i % 4,
            "quantiles": [0.1 * (1 + i % 3), 0.9],
            **({"promo": {SKUS[i % 6]: [1, 1]}} if i % 5 == 0 else {}),
        }
        for i in range(24)
    ]
    bodies[7]["skus"] = ["NO-SUCH-SKU"]
    alone = [post(url, "forecast", b) for b in bodies]
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda b: post(url, "forecast", b), bodies))
    assert [r.status_code for r in alone] == [404 if i == 7 else 200 for i in range(24)]
    # Answers are rounded to 4 decimals, and float32 sums over a batch of another size may flip that last digit;
    # another request's answer would differ by far more.
    for got, own in zip(together, alone):
        assert got.status_code == own.status_code
        assert [k for k, _ in _leaves(got.json())] == [k for k, _ in _leaves(own.json())]
        for (path, a), (_, b) in zip(_leaves(got.json()), _leaves(own.json())):
            assert a == b if isinstance(a, str) else a == pytest.approx(b, abs=2e-4), path
    metrics = requests.get(f"{url}/metrics", timeout=30).text  # they went through BentoML's batching
    assert 'bentoml_service_adaptive_batch_size_count{method_name="forecast"' in metrics


def test_predict_exports_what_forecast_answers_with_its_lineage(url, cfg, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "all.parquet"
    cli = [sys.executable, "-m", "cli", "predict", *store_args(cfg)]
    done = subprocess.run(
        [*cli, "--out", str(out), "--horizon", "9", "--quantiles", "0.9,0.1"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["sku", "date", "mean", "q0.1", "q0.9"]
    assert frame.groupby("sku").size().to_dict() == {s: 9 for s in SKUS}
    meta = pq.read_schema(out).metadata
    assert meta[b"supplyml.model_version"] == b"1" and meta[b"supplyml.data_md5"] == LINEAGE["dvc_md5"].encode()
    answer = post(url, "forecast", {"skus": ["SKU-4"], "horizon": 9, "quantiles": [0.1, 0.9]}).json()["forecasts"][0]
    rows = frame[frame["sku"] == "SKU-4"]
    assert [d.date().isoformat() for d in rows["date"]] == answer["dates"]
    np.testing.assert_allclose(rows["mean"], answer["mean"], atol=1e-4)
    np.testing.assert_allclose(rows["q0.9"], answer["quantiles"]["0.9"], atol=1e-4)

    wrong = subprocess.run(
        [*cli, "--out", str(tmp_path / "x.parquet"), "--version", "7"], capture_output=True, text=True, timeout=300
    )
    assert wrong.returncode == 1 and "has no version '7'; versions: 1" in wrong.stderr
    too_far = subprocess.run(
        [*cli, "--out", str(tmp_path / "x.parquet"), "--horizon", str(MAX_HORIZON + 1)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert too_far.returncode == 2 and f"serving.max_horizon = {MAX_HORIZON}" in too_far.stderr
    assert not (tmp_path / "x.parquet").exists()
