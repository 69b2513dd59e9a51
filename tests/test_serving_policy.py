"""POST /replenish with the learned policy packaged beside the forecaster, over real HTTP."""

import math
from statistics import NormalDist

import mlflow
import numpy as np
import pytest
import requests
from serving_stack import LINEAGE, P_METRICS, SKUS, post

from supplyml import registry

pytestmark = pytest.mark.slow
TRAINED = {"lead_time_days": 3, "review_period_days": 7}  # inventory.* defaults, what the fixture's policy learnt


def item(sku, **extra):
    return {"sku": sku, "on_hand": 12.0, "on_order": 0.0, "service_level": 0.95, **TRAINED, **extra}


@pytest.fixture(scope="module")
def local(cfg, bento):
    """The packaged versions, loaded here from the registry: what the server answers must equal their answers."""
    mlflow.set_tracking_uri(cfg.tracking_uri)
    models = registry.load_forecaster(cfg.registry.model_name), registry.load_policy(cfg.registry.policy_name)
    mlflow.set_tracking_uri(None)
    return models


def one(url, it) -> dict:
    """The decision for one item, alone in its request: its paths are the forecaster's draw for its SKU alone."""
    r = post(url, "replenish", {"items": [it]})
    assert r.status_code == 200, r.text
    return r.json()["decisions"][0]


def by_hand(forecaster, it, cfg) -> tuple[np.ndarray, dict]:
    """Base stock recomputed from the model's sample paths: S and the reorder point are the inverted-CDF
    quantiles of the L + R and L totals at the calibrated level, the fixture's total map read by hand:
    0.95 -> 0.55 + (0.95 - 0.5) / (0.99 - 0.5) * (0.995 - 0.55) = 0.958673."""
    L, R = it["lead_time_days"], it["review_period_days"]
    n = cfg.inventory.num_sample_paths
    paths = forecaster.sample([it["sku"]], L + R, n, cfg.seed)[0]
    level = 0.55 + (0.95 - 0.5) / (0.99 - 0.5) * (0.995 - 0.55)
    assert it["service_level"] == 0.95
    S = np.sort(paths.sum(axis=1))[math.ceil(level * n) - 1]
    expected = paths.sum(axis=1).mean()
    return paths, {
        "order_up_to": S,
        "reorder_point": np.sort(paths[:, :L].sum(axis=1))[math.ceil(level * n) - 1],
        "safety_stock": S - expected,
        "expected_demand": expected,
        "order_quantity": max(0.0, S - it["on_hand"] - it["on_order"]),
    }


def test_the_learned_policy_decides_by_default_where_it_was_trained_and_says_so(url):
    items = [
        item(SKUS[2]),
        item(SKUS[4], on_hand=0.0),
        item(SKUS[4], on_hand=0.0, on_order=30.0),
        item(SKUS[5], policy="base_stock"),
        item(SKUS[3], lead_time_days=2),
        item(SKUS[3], policy="classical"),
    ]
    r = post(url, "replenish", {"items": items})
    assert r.status_code == 200, r.text
    policies = [d["policy"] for d in r.json()["decisions"]]
    assert policies == ["learned", "learned", "learned", "base_stock", "base_stock", "classical"]


def test_base_stock_is_the_order_up_to_rule_on_the_models_paths(url, local, cfg):
    forecaster, _ = local
    for it in (item(SKUS[5], policy="base_stock"), item(SKUS[3], lead_time_days=2, on_order=4.0)):
        d = one(url, it)
        _, expected = by_hand(forecaster, it, cfg)
        assert d["policy"] == "base_stock"
        assert {k: d[k] for k in expected} == pytest.approx(expected, abs=1e-3)


def test_the_classical_policy_is_the_textbook_formula_on_the_last_28_days(url, panel):
    it = item(SKUS[3], policy="classical", on_hand=20.0)
    d = one(url, it)
    recent = panel.loc[panel["unique_id"] == SKUS[3], "y"].to_numpy()[-28:]
    mu, sigma, z, days = recent.mean(), recent.std(), NormalDist().inv_cdf(0.95), 3 + 7  # sigma with ddof = 0
    S = days * mu + z * sigma * math.sqrt(days)
    expected = {
        "order_up_to": S,
        "reorder_point": 3 * mu + z * sigma * math.sqrt(3),
        "safety_stock": z * sigma * math.sqrt(days),
        "expected_demand": days * mu,
        "order_quantity": max(0.0, S - 20.0),
    }
    assert d["policy"] == "classical" and {k: d[k] for k in expected} == pytest.approx(expected, abs=1e-3)


def test_the_learned_order_is_the_policys_action_on_the_documented_observation(url, local, cfg):
    """The observation /replenish documents (supplyml.replenishing.env): on hand, the orders due in 1 ..
    L - 1 days (what is on order counts as due tomorrow) and the 0.5, 0.8 and 0.95 quantiles of the paths'
    L + R totals, each over the scale (mean demand per review period), capped at 1000; the order is the
    greedy action in tenths of the scale. The other figures are base stock's on the same paths."""
    forecaster, policy = local
    for it in (item(SKUS[4], on_hand=0.0), item(SKUS[4], on_hand=0.0, on_order=30.0), item(SKUS[2], on_hand=3.0)):
        d = one(url, it)
        paths, expected = by_hand(forecaster, it, cfg)
        totals = paths.sum(axis=1)
        scale = max(totals.mean() * 7 / 10, 0.1)
        due = [it["on_order"], 0.0]  # L - 1 = 2 days
        seen = np.minimum(np.array([it["on_hand"], *due, *np.quantile(totals, [0.5, 0.8, 0.95])]) / scale, 1000.0)
        action, _ = policy.policy.predict(seen.astype(np.float32)[None], deterministic=True)
        order = 0.0 if it["on_hand"] + it["on_order"] >= totals.max() else float(action[0]) * scale * 0.1
        assert d["policy"] == "learned" and d["order_quantity"] == pytest.approx(order, abs=1e-3)
        expected.pop("order_quantity")
        assert {k: d[k] for k in expected} == pytest.approx(expected, abs=1e-3)


def test_naming_the_policy_switches_the_decider_for_the_same_item(url):
    learned, base = (
        post(url, "replenish", {"items": [item(SKUS[4], on_hand=0.0, policy=p)]}).json()["decisions"][0]
        for p in ("learned", "base_stock")
    )
    assert (learned["policy"], base["policy"]) == ("learned", "base_stock")
    # The forecast's figures are the same paths' either way; only the order differs in who decided it.
    for key in ("order_up_to", "reorder_point", "safety_stock", "expected_demand"):
        assert learned[key] == base[key]
    assert base["order_quantity"] == pytest.approx(base["order_up_to"], abs=1e-3)  # nothing on hand or on order


def test_absurd_stock_is_still_an_answer(url):
    # Positions beyond float range in sum: the policy sees "plenty" and orders nothing, base stock too.
    huge = {"on_hand": 1.7e308, "on_order": 1.7e308}
    for policy in ("learned", "base_stock"):
        r = post(url, "replenish", {"items": [item(SKUS[4], policy=policy, **huge)]})
        assert r.status_code == 200, r.text
        assert r.json()["decisions"][0]["order_quantity"] == 0.0


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"policy": "learned", "lead_time_days": 2}, "trained for lead_time_days = 3 and review_period_days = 7"),
        ({"policy": "learned", "review_period_days": 14}, "trained for lead_time_days = 3"),
        ({"policy": "dqn"}, "'base_stock', 'classical' or 'learned'"),
        ({"policy": 1}, "'base_stock', 'classical' or 'learned'"),
    ],
)
def test_bad_policy_requests_are_400s_naming_the_field(url, extra, message):
    r = post(url, "replenish", {"items": [item(SKUS[1], **extra)]})
    assert r.status_code == 400, r.text
    body = r.json()
    assert any(message in d["msg"] for d in body["detail"]), body
    assert any(loc[:2] == ["items", 0] for loc in (d["loc"] for d in body["detail"])), body


def test_replenish_names_the_policy_in_its_lineage_and_metadata(url):
    r = post(url, "replenish", {"items": [item(SKUS[0])]})
    assert r.headers["X-Supplyml-Model"] == "supplyml-forecaster"
    assert r.headers["X-Supplyml-Policy"] == "supplyml-policy" and r.headers["X-Supplyml-Policy-Version"] == "1"
    assert "X-Supplyml-Policy" not in post(url, "forecast", {"skus": [SKUS[0]], "horizon": 3}).headers
    meta = requests.get(f"{url}/metadata", timeout=30).json()["policy"]
    assert meta["model_name"] == "supplyml-policy" and meta["model_version"] == "1"
    assert meta["metrics"] == P_METRICS
    assert meta["policy"] == {"algorithm": "ppo", "lead_time": 3, "review_period": 7, "n_actions": 31}
    assert {k: meta[k] for k in LINEAGE} == LINEAGE
