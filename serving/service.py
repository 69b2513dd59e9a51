"""The Bento service: one part per model family (serving/<its package's last name>.py), composed here, so
a planning system has one address, one token and one set of limits. Today's parts: POST /forecast
(forecasting), POST /replenish (replenishing: base stock, the classical policy or the learned policy) and
POST /recommend and /similar (recommending); GET /metadata and GET /docs.json describe them all.

A part module has:
- `FAMILY` and `Endpoints`, a mixin of its BentoML APIs;
- `load(service)`: its model onto the service, each code path run once;
- `PATHS`, `COUNTED` (the list field, limit and its config name per path, checked before parsing) and
  `headers()` (the lineage headers on its paths);
- `describe(service)` and `METADATA` (its entries in /metadata, and their schema);
- `OPERATIONS`, `BODIES`, `HEADERS` (its 200 answers' headers beyond the lineage), `ABOUT` and
  `example(path, service)` (its part of /docs.json).

A thin wrapper: pydantic checks every field (a bad one is a 400 naming it), an unknown SKU is a 404, and
every answer is computed by `supplyml.planning` or the family's model. `Guard`, an ASGI middleware, applies
what holds for every route but the probes: the optional bearer token (401), the body-size, media-type and
count limits (413, 415, 422) and the lineage headers. With `serving.batching` on, BentoML's adaptive
batching collects concurrent requests and planning answers them with shared model calls.
"""

from __future__ import annotations

import gc
import importlib

import bentoml
import torch
from fastapi import FastAPI
from pydantic import create_model

from serving.bento import MODELS, SERVING, SETTINGS, TIMEOUT_S, Settings, model_attribute
from serving.contract import contract
from serving.middleware import Guard, error_response, install_timeout
from serving.schemas import ModelMetadata
from supplyml import families

# The forecaster's part first: every Bento has one, and the other parts decide on its paths.
PARTS = [
    importlib.import_module(f"serving.{f.package.rsplit('.', 1)[-1]}")
    for f in sorted(families.FAMILIES.values(), key=lambda f: f.name != families.FORECASTER)
]
Metadata = create_model(
    "Metadata",
    __base__=(ModelMetadata, Settings),  # the forecaster's model, then how the answers are computed
    bento=(str | None, ...),
    **{name: field for part in PARTS for name, field in part.METADATA.items()},
)
info = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # GET routes; the one contract is /docs.json


class SupplyForecast(*(part.Endpoints for part in PARTS)):
    def __init__(self) -> None:
        torch.set_num_threads(SERVING.torch_threads)
        for part in PARTS:
            part.load(self)
        # What is loaded by now, out of the collector's sight: ~600k objects that live as long as the process,
        # which every full collection walked, stalling all requests for ~0.5 s.
        gc.freeze()
        self.document: dict | None = None

    def answer(self, requests: list, skus: list[list[tuple[list, str]]], answer) -> list:
        """Each request's answer from `answer(the requests whose SKUs are all known)`; a request with an
        unknown SKU gets its 404 here, so it does not fail the others batched with it."""
        refused = [_unknown_skus(s, self.known) for s in skus]
        answers = iter(answer([r for r, no in zip(requests, refused) if no is None]))
        return [no or next(answers) for no in refused]

    @info.get("/metadata", response_model=Metadata, response_model_exclude_unset=True)
    def metadata(self) -> dict:
        bento = bentoml.server_context
        described = {k: v for part in PARTS for k, v in part.describe(self).items()}
        return {**described, **SETTINGS, "bento": f"{bento.bento_name}:{bento.bento_version}" if bento.bento_name else None}

    # The mounted app's routes come before BentoML's own /docs.json, so this one answers it.
    @info.get("/docs.json", include_in_schema=False)
    def docs(self) -> dict:
        if self.document is None:
            examples = {path: part.example(path, self) for part in PARTS for path in part.PATHS}
            self.document = contract(SupplyForecast.openapi_spec.asdict(), PARTS, Metadata, examples)
        return self.document


for _family, _model in MODELS.items():  # the Bento carries the models its service class names
    setattr(SupplyForecast, model_attribute(_family), _model)
SupplyForecast = bentoml.service(traffic={"timeout": TIMEOUT_S})(bentoml.asgi_app(info, path="/")(SupplyForecast))


def _unknown_skus(requested: list[tuple[list, str]], known: set[str]):
    detail = [
        {"type": "unknown_sku", "loc": loc, "msg": f"unknown SKU {sku!r}; GET /metadata lists the SKUs this model knows"}
        for loc, sku in requested
        if sku not in known
    ]
    return error_response(404, f"{len(detail)} unknown SKU(s)", detail) if detail else None


install_timeout()  # before BentoML builds the app
SupplyForecast.add_asgi_middleware(
    Guard,
    counted={path: limit for part in PARTS for path, limit in part.COUNTED.items()},
    headers={path: part.headers() for part in PARTS for path in part.PATHS},
    default_headers=PARTS[0].headers(),  # /metadata and /docs.json: the forecaster's
)
