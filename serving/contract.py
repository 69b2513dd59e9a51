"""/docs.json: BentoML's generated OpenAPI document, in OpenAPI 3.0 terms, with the bodies this service
really writes."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from serving.bento import TIMEOUT_S, TOKEN
from serving.schemas import Error, ServerError

REF = "#/components/schemas/{model}"


def _body_doc(description: str, model: str, headers: dict | None = None) -> dict:
    doc = {"description": description, "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}}
    return {**doc, "headers": headers} if headers else doc


ERRORS = {
    "400": _body_doc("A field is invalid: `detail` names each, by `loc` (its path in the body) and `msg`", "Error"),
    "401": _body_doc(
        "The server was started with SUPPLYML_API_TOKEN and the request lacks `Authorization: Bearer "
        "<token>` or has another token",
        "Error",
        {"WWW-Authenticate": {"schema": {"type": "string"}}},
    ),
    "404": _body_doc("A SKU the model does not know: `detail` names each (GET /metadata lists the forecaster's)", "Error"),
    "413": _body_doc("The body is larger than serving.max_body_bytes", "Error"),
    "415": _body_doc("The body is not sent as application/json", "Error"),
    "422": _body_doc(
        "More SKUs (/forecast), items (/replenish) or excluded SKUs (/recommend) than serving.max_skus or serving.max_items",
        "Error",
    ),
    "500": _body_doc("A fault of the server; its log has the traceback", "ServerError"),
    "503": _body_doc(
        "Overloaded: a request waited longer than serving.max_latency_ms for a batch; on /recommend and "
        "/similar also: this Bento was packaged without a recommender",
        "ServerError",
    ),
    "504": _body_doc(f"No answer started within {TIMEOUT_S} s", "ServerError"),
}
LINEAGE_DOC = {
    name: {"description": what, "required": True, "schema": {"type": "string"}}
    for name, what in (
        ("X-Supplyml-Model", "registered model name"),
        ("X-Supplyml-Model-Version", "registered model version"),
        ("X-Supplyml-Data-Md5", "DVC md5 of the training data"),
    )
}


def contract(generated: dict, parts: list, metadata: type[BaseModel], examples: dict[str, dict]) -> dict:
    """/docs.json: OpenAPI 3.0.3 (what client generators read best), with the real error bodies, the lineage
    headers and each part's own (`HEADERS`), /metadata's answer, each part's operations with its `examples`
    per path and, when a token is required, the bearer scheme."""
    spec = json.loads(json.dumps(generated))
    spec["openapi"] = "3.0.3"
    about = "; ".join(part.ABOUT for part in parts if part.ABOUT)
    spec["info"] = {
        "title": "supplyml",
        "version": str(parts[0].META["model_version"]),  # the forecaster's: every Bento has one
        "description": about[:1].upper() + about[1:],
    }
    schemas = spec["components"]["schemas"]
    for stale in ("InvalidArgument", "NotFound", "InternalServerError"):  # BentoML's, not these bodies
        schemas.pop(stale)
    bodies = {path: pair for part in parts for path, pair in part.BODIES.items()}
    for model in (Error, ServerError, metadata, *(m for pair in bodies.values() for m in pair)):
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    operations = {("/metadata", "get"): ("401",), **{op: statuses for part in parts for op, statuses in part.OPERATIONS.items()}}
    headers = {path: doc for part in parts for path, doc in part.HEADERS.items()}
    for (path, method), statuses in operations.items():
        operation = spec["paths"][path][method]
        operation["responses"] = {
            "200": {**operation["responses"]["200"], "headers": {**LINEAGE_DOC, **headers.get(path, {})}},
            **{s: ERRORS[s] for s in statuses},
        }
        if "requestBody" in operation:
            operation["requestBody"]["required"] = True
            operation["requestBody"]["content"]["application/json"]["example"] = examples[path]
        if TOKEN:
            operation["security"] = [{"bearer": []}]
    spec["paths"]["/metadata"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "$ref": REF.format(model="Metadata")
    }
    for path, (request, answer) in bodies.items():
        operation = spec["paths"][path]["post"]
        operation["requestBody"]["content"]["application/json"]["schema"] = {"$ref": REF.format(model=request.__name__)}
        operation["responses"]["200"]["content"]["application/json"]["schema"] = {"$ref": REF.format(model=answer.__name__)}
    return _openapi30(spec)


def _openapi30(node: Any) -> Any:
    """JSON Schema 2020-12 as pydantic writes it, in OpenAPI 3.0 terms: boolean exclusive bounds beside
    minimum/maximum, and `nullable` for a union with null."""
    if isinstance(node, list):
        return [_openapi30(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _openapi30(v) for k, v in node.items()}
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if type(node.get(exclusive)) in (int, float):
            node[bound], node[exclusive] = node[exclusive], True
    if {"type": "null"} in node.get("anyOf", []):
        rest = [s for s in node.pop("anyOf") if s != {"type": "null"}]
        node.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        node["nullable"] = True
    return node
