"""POST /recommend and POST /similar over real HTTP, on the Bento that serves the forecaster too."""

import pytest
import requests
from serving_stack import CUSTOMERS, SKUS, post

pytestmark = pytest.mark.slow


def test_a_known_customer_gets_their_own_items_first_then_their_tastes(url):
    r = post(url, "recommend", {"customer_id": "100", "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["customer_id"] == "100" and body["fallback"] is None
    skus = [x["sku"] for x in body["recommendations"]]
    # One repeat slot: SKU-0, bought on 5 days, first; then the network's ranking of the rest, where the
    # customer's own taste (SKU-1, SKU-2) beats the other group's.
    assert skus[0] == SKUS[0] and set(skus[1:3]) == {SKUS[1], SKUS[2]} and len(skus) == 4
    assert body["recommendations"][0]["description"] == f"PRODUCT {SKUS[0]}"
    scores = [x["score"] for x in body["recommendations"]]
    assert scores == sorted(scores, reverse=True)


def test_a_numeric_customer_id_is_the_same_customer(url):
    assert (
        post(url, "recommend", {"customer_id": 100, "k": 3}).json()
        == post(url, "recommend", {"customer_id": "100", "k": 3}).json()
    )


def test_an_unknown_customer_gets_popular_items_and_is_told_so(url):
    r = post(url, "recommend", {"customer_id": "99999", "k": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback"] == "popularity"
    # Every SKU has 10 buyers in the last 28 days and ever (customer 100's extra days add no buyer): a tie,
    # which keeps catalogue order.
    assert [x["sku"] for x in body["recommendations"]] == SKUS


def test_exclusions_leave_out_purchases_and_named_skus(url):
    body = post(url, "recommend", {"customer_id": "100", "k": 6, "exclude_purchased": True, "exclude": [SKUS[3]]}).json()
    assert [x["sku"] for x in body["recommendations"]] and {x["sku"] for x in body["recommendations"]} == {
        SKUS[4],
        SKUS[5],
    }  # 0..2 bought, 3 excluded


def test_similar_items_are_those_bought_by_the_same_customers(url):
    r = post(url, "similar", {"sku": SKUS[0], "k": 5})
    assert r.status_code == 200, r.text
    similar = r.json()["similar"]
    # SKU-0's buyers (100..109) bought SKU-1 and SKU-2 and nothing else: cosine 10 / sqrt(10 * 10) = 1.
    assert [(x["sku"], x["score"]) for x in similar] == [(SKUS[1], pytest.approx(1.0)), (SKUS[2], pytest.approx(1.0))]
    assert similar[0]["description"] == f"PRODUCT {SKUS[1]}"


@pytest.mark.parametrize(
    "path, payload, field",
    [
        ("recommend", {}, "customer_id"),
        ("recommend", {"customer_id": "100", "k": 0}, "k"),
        ("recommend", {"customer_id": "100", "k": 101}, "k"),  # serving.max_k = 100
        ("recommend", {"customer_id": "100", "k": "3"}, "k"),
        ("recommend", {"customer_id": "100", "exclude_purchased": "yes"}, "exclude_purchased"),
        ("recommend", {"customer_id": "100", "exclude": [""]}, "exclude"),
        ("recommend", {"customer_id": ["100"]}, "customer_id"),
        ("similar", {"k": 3}, "sku"),
        ("similar", {"sku": SKUS[0], "k": -1}, "k"),
    ],
)
def test_bad_requests_get_a_400_naming_the_field(url, path, payload, field):
    r = post(url, path, payload)
    assert r.status_code == 400, r.text
    assert any(field in map(str, d["loc"]) for d in r.json()["detail"]), r.text


def test_an_unknown_sku_is_a_404_naming_it(url):
    r = post(url, "similar", {"sku": "NO-SUCH-SKU", "k": 3})
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == ["sku"] and "NO-SUCH-SKU" in r.text


def test_limits_and_lineage_are_the_other_endpoints(url, cfg):
    r = post(url, "recommend", {"customer_id": "100", "exclude": [f"X{i}" for i in range(1001)]})
    assert r.status_code == 422 and "serving.max_skus" in r.text
    r = requests.post(
        f"{url}/recommend", data="customer_id=100", timeout=30, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 415
    r = post(url, "recommend", {"customer_id": "100"})
    assert r.headers["X-Supplyml-Model"] == cfg.registry.recommender_name
    assert r.headers["X-Supplyml-Model-Version"] == "1"
    forecast = post(url, "forecast", {"skus": [SKUS[0]], "horizon": 3})
    assert forecast.headers["X-Supplyml-Model"] == cfg.registry.model_name


def test_metadata_describes_the_recommender(url, cfg):
    meta = requests.get(f"{url}/metadata", timeout=30).json()["recommender"]
    assert meta["model_name"] == cfg.registry.recommender_name and meta["model_version"] == "1"
    assert meta["customers"] == len(CUSTOMERS) and meta["skus"] == len(SKUS)
