"""POST /replenish with the learned policy packaged beside the forecaster, over real HTTP."""

import mlflow
import pytest
import requests
from serving_stack import LINEAGE, P_METRICS, SKUS, post

from supplyml import planning, registry

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


def test_the_learned_policy_decides_by_default_where_it_was_trained_and_says_so(url, local, cfg):
    items = [
        item(SKUS[2]),
        item(SKUS[4], on_hand=0.0),
        item(SKUS[4], on_hand=0.0, on_order=30.0),
        item(SKUS[5], policy="base_stock"),
        item(SKUS[3], lead_time_days=2),
    ]
    r = post(url, "replenish", {"items": items})
    assert r.status_code == 200, r.text
    decisions = r.json()["decisions"]
    assert [d["policy"] for d in decisions] == ["learned", "learned", "learned", "base_stock", "base_stock"]
    # The server's answers are the library's on the same paths (same samples and seed).
    forecaster, policy = local
    expected = planning.replenish(forecaster, items, cfg.inventory.num_sample_paths, cfg.seed, policy)
    for d, e in zip(decisions, expected, strict=True):
        assert (d["sku"], d["policy"]) == (e["sku"], e["policy"])
        assert {k: v for k, v in d.items() if k not in ("sku", "policy")} == pytest.approx(
            {k: v for k, v in e.items() if k not in ("sku", "policy")}, abs=1e-3
        )
    # Base stock, named or by default, is the order-up-to rule.
    for it, d in zip(items[3:], decisions[3:]):
        assert d["order_quantity"] == pytest.approx(max(0.0, d["order_up_to"] - it["on_hand"] - it["on_order"]), abs=1e-3)


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
