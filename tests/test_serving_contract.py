"""The contract at /docs.json, on this module's own real `bentoml serve`: a valid OpenAPI 3.0 document,
real answers that match the schemas it documents for their status, and a schemathesis run over every
operation and phase with schemathesis's default checks."""

import json
import zlib

import pytest
import requests
import schemathesis
from click.testing import CliRunner
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import OpenAPIV30SpecValidator, validate
from schemathesis.cli import schemathesis as schemathesis_cli
from serving_stack import ITEM, MAX_HORIZON, SKUS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def contract(url):
    r = requests.get(f"{url}/docs.json", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_docs_json_is_a_valid_openapi_3_0_document(contract):
    validate(contract, cls=OpenAPIV30SpecValidator)
    assert contract["openapi"] == "3.0.3"
    level = contract["paths"]["/forecast"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"][
        "quantiles"
    ]["items"]
    assert {k: level[k] for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")} == {
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 1,
        "exclusiveMaximum": True,
    }
    item = contract["components"]["schemas"]["Item"]["properties"]
    assert item["service_level"]["exclusiveMaximum"] is True and item["promo"]["maxItems"] == MAX_HORIZON
    # Unions as pydantic means them: a numeric or text customer id; no fallback for a known customer.
    schemas = contract["components"]["schemas"]
    assert schemas["RecommendRequest"]["properties"]["customer_id"]["anyOf"] == [{"type": "string"}, {"type": "integer"}]
    assert schemas["Recommendation"]["properties"]["fallback"]["nullable"] is True
    for path, method in (
        ("/forecast", "post"),
        ("/replenish", "post"),
        ("/recommend", "post"),
        ("/similar", "post"),
        ("/metadata", "get"),
    ):
        operation = contract["paths"][path][method]
        assert "security" not in operation  # this server runs without SUPPLYML_API_TOKEN
        lineage = {"X-Supplyml-Model", "X-Supplyml-Model-Version", "X-Supplyml-Data-Md5"}
        policy = {"X-Supplyml-Policy", "X-Supplyml-Policy-Version"} if path == "/replenish" else set()
        headers = operation["responses"]["200"]["headers"]
        assert set(headers) == lineage | policy
        assert {name for name, doc in headers.items() if doc.get("required")} == lineage  # the policy's: when packaged


def _documented(contract, path, method, status):
    schema = contract["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    return OAS30Validator({**schema, "components": contract["components"]})  # refs resolve against the document


@pytest.mark.parametrize(
    "path, body, status",
    [
        ("/forecast", {"skus": SKUS[:2], "horizon": 5, "quantiles": [0.1, 0.9], "promo": {SKUS[0]: [1]}}, 200),
        ("/replenish", {"items": [ITEM]}, 200),
        ("/forecast", {"skus": [SKUS[0]], "horizon": 0}, 400),
        ("/replenish", "not json", 400),
        ("/forecast", {"skus": ["NO-SUCH-SKU"], "horizon": 5}, 404),
        ("/replenish", {"items": [{**ITEM, "sku": "NO-SUCH-SKU"}]}, 404),
        ("/forecast", {"skus": [SKUS[0]], "horizon": 5, "note": "x" * 1_100_000}, 413),
        ("/forecast", {"skus": SKUS * 200, "horizon": 5}, 422),
        ("/replenish", {"items": [ITEM] * 1001}, 422),
    ],
)
def test_real_answers_match_the_documented_schema_of_their_status(url, contract, path, body, status):
    data = body if isinstance(body, str) else json.dumps(body)
    r = requests.post(f"{url}{path}", data=data, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == status, r.text
    _documented(contract, path, "post", status).validate(r.json())
    if status == 200:  # this Bento packages a learned policy: every documented header is sent, and no other
        documented = contract["paths"][path]["post"]["responses"]["200"]["headers"]
        assert {h.lower() for h in r.headers if h.lower().startswith("x-supplyml")} == {h.lower() for h in documented}


def test_metadata_and_a_415_match_their_documented_schemas(url, contract):
    r = requests.get(f"{url}/metadata", timeout=30)
    assert r.status_code == 200
    _documented(contract, "/metadata", "get", 200).validate(r.json())
    r = requests.post(f"{url}/replenish", data="items=1", headers={"content-type": "text/plain"}, timeout=30)
    assert r.status_code == 415
    _documented(contract, "/replenish", "post", 415).validate(r.json())


def _known(sku: str) -> str:
    return SKUS[zlib.crc32(sku.encode()) % len(SKUS)]


@schemathesis.hook
def map_case(ctx, case):
    """Positive cases ask about SKUs the model knows, so they get answers to check against their schemas
    rather than 404s (which positive cases may get). Nothing else is bent: the document itself states the
    rules between fields. Negative cases stay as generated."""
    if case.meta is None or not case.meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return case
    if case.operation.path == "/forecast":
        case.body["skus"] = [_known(s) for s in case.body["skus"]]
    elif case.operation.path == "/replenish":
        for item in case.body["items"]:
            item["sku"] = _known(item["sku"])
    return case


def test_the_document_states_the_rules_between_an_items_fields(contract):
    """What schemathesis found the document allowing and the server refusing (ST202): L + R past the model's
    horizon, the learned policy at another lead time. Both are now the document's own rules."""
    item = OAS30Validator({"$ref": "#/components/schemas/Item", "components": contract["components"]})
    ok = {**ITEM, "lead_time_days": MAX_HORIZON - 7, "review_period_days": 7}
    assert item.is_valid(ok) and item.is_valid({**ITEM, "policy": "learned"})  # 3 and 7: what it was trained for
    assert not item.is_valid({**ok, "review_period_days": 8})  # L + R = MAX_HORIZON + 1
    assert not item.is_valid({**ITEM, "lead_time_days": 4, "policy": "learned"})
    assert item.is_valid({**ITEM, "lead_time_days": 4, "policy": "base_stock"})


def test_schemathesis_finds_nothing_over_every_operation_and_phase(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its crash cache, .schemathesis/, goes to the working directory
    report = tmp_path / "schemathesis.json"
    result = CliRunner().invoke(
        schemathesis_cli,
        [
            "run",
            f"{url}/docs.json",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "100",
            "--seed",
            "1",
            "--workers",
            "1",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output[-20000:]
    run = json.loads(report.read_text())
    assert run["operations"]["tested"] == run["operations"]["total"] == 9
    assert {p: run["phases"][p]["status"] for p in ("examples", "coverage", "fuzzing")} == dict.fromkeys(
        ("examples", "coverage", "fuzzing"), "success"
    )
    assert run["phases"]["stateful"]["skip_reason"] == "not_applicable"  # no links between operations
    assert run["test_cases"]["generated"] >= 300 and run["test_cases"]["with_failures"] == 0, run["test_cases"]
