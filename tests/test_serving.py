"""The Bento built by the pipeline, served by a real `bentoml serve` over loopback HTTP."""
import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def meta(server):
    r = requests.get(f"{server}/metadata", timeout=30)
    assert r.status_code == 200
    return r.json()


def post(server, path, payload):
    return requests.post(f"{server}/{path}", json=payload, timeout=60)


def test_metadata_names_model_data_and_metrics(meta):
    assert meta["model_name"] == "supplyml-forecaster" and meta["model_version"] == "1"
    assert meta["dvc_md5"] == yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]["md5"]
    assert len(meta["git_commit"]) == 40
    assert {"wrmsse", "mase", "wspl"} <= set(meta["metrics"])
    assert len(meta["skus"]) == 50 and meta["history_end"] == "2011-12-09"
    assert meta["bento_model"].startswith("supplyml-forecaster:")


def test_forecast_gives_dates_mean_and_ordered_quantiles(server, meta):
    skus = meta["skus"][:2]
    r = post(server, "forecast", {"skus": skus, "horizon": 14, "quantiles": [0.9, 0.1, 0.5]})
    assert r.status_code == 200
    forecasts = r.json()["forecasts"]
    assert [f["sku"] for f in forecasts] == skus
    for f in forecasts:
        assert f["dates"] == [d.date().isoformat() for d in pd.date_range("2011-12-10", periods=14)]
        q = np.array([f["quantiles"][k] for k in ("0.1", "0.5", "0.9")])
        assert q.shape == (3, 14) and (q >= 0).all() and (np.diff(q, axis=0) >= 0).all()
        assert len(f["mean"]) == 14 and min(f["mean"]) >= 0


def test_forecast_defaults_to_a_90_percent_band(server, meta):
    r = post(server, "forecast", {"skus": meta["skus"][:1], "horizon": 1})
    assert r.status_code == 200 and set(r.json()["forecasts"][0]["quantiles"]) == {"0.05", "0.5", "0.95"}


def test_replenish_is_a_base_stock_decision(server, meta):
    sku = meta["skus"][0]
    items = [{"sku": sku, "on_hand": 40, "on_order": 10, "lead_time_days": 7, "review_period_days": 7,
              "service_level": level} for level in (0.8, 0.95, 0.99)]
    r = post(server, "replenish", {"items": items})
    assert r.status_code == 200
    decisions = r.json()["decisions"]
    for d in decisions:
        assert d["order_quantity"] == max(0.0, d["order_up_to"] - 50)
        assert d["safety_stock"] == pytest.approx(d["order_up_to"] - d["expected_demand"], abs=1e-3)
        assert d["reorder_point"] <= d["order_up_to"]
    assert decisions[0]["order_up_to"] <= decisions[1]["order_up_to"] <= decisions[2]["order_up_to"]


ITEM = {"on_hand": 5, "on_order": 0, "lead_time_days": 3, "review_period_days": 7, "service_level": 0.95}


@pytest.mark.parametrize("path, payload, status, field", [
    ("forecast", {"skus": ["NO-SUCH-SKU"], "horizon": 7}, 404, "skus"),
    ("forecast", {"skus": [], "horizon": 7}, 400, "skus"),
    ("forecast", {"skus": "SKU", "horizon": 0}, 400, "horizon"),
    ("forecast", {"skus": "SKU", "horizon": 57}, 400, "horizon"),
    ("forecast", {"skus": "SKU", "horizon": "soon"}, 400, "horizon"),
    ("forecast", {"skus": "SKU", "horizon": 7, "quantiles": [1.5]}, 400, "quantiles"),
    ("replenish", {"items": [{**ITEM, "sku": "SKU", "on_hand": -1}]}, 400, "on_hand"),
    ("replenish", {"items": [{**ITEM, "sku": "SKU", "on_hand": "ten"}]}, 400, "on_hand"),
    ("replenish", {"items": [{**ITEM, "sku": "SKU", "service_level": 1.5}]}, 400, "service_level"),
    ("replenish", {"items": [{**ITEM, "sku": "SKU", "lead_time_days": -2}]}, 400, "lead_time_days"),
    ("replenish", {"items": [{**ITEM, "sku": "SKU", "review_period_days": 60}]}, 400, "review_period_days"),
    ("replenish", {"items": [{**ITEM, "sku": "NO-SUCH-SKU"}]}, 404, "skus"),
    ("replenish", {"items": []}, 400, "items"),
    ("replenish", {}, 400, "items"),
])
def test_bad_requests_get_a_4xx_naming_the_field(server, meta, path, payload, status, field):
    payload = {k: ([meta["skus"][0]] if v == "SKU" else v) for k, v in payload.items()}
    for item in payload.get("items", []):
        item["sku"] = meta["skus"][0] if item["sku"] == "SKU" else item["sku"]
    r = post(server, path, payload)
    assert r.status_code == status, r.text
    assert field in r.text


def test_malformed_json_is_a_400(server):
    r = requests.post(f"{server}/replenish", data="not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
