"""The recommender's part of the service: POST /recommend and POST /similar over the recommender packaged
beside the forecaster (one service, so a planning system has one address, one token and one set of limits);
its answers carry its own lineage. A Bento packaged without one answers them 503."""

from __future__ import annotations

from datetime import date

import bentoml
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from serving.adapters import batch_of_one, single
from serving.bento import METAS, SERVING, lineage, packaged
from serving.middleware import error_response
from serving.schemas import ModelMetadata, Request, Sku

FAMILY = "recommend"
META = METAS.get(FAMILY)  # None: a Bento without recommendations


class RecommendRequest(Request):
    customer_id: str | int = Field(
        description='the order lines\' CustomerID (17850 and "17850" are the same '
        "customer); one the model never saw gets popular items"
    )
    k: int = Field(10, ge=1, le=SERVING.max_k)
    exclude_purchased: bool = Field(False, description="leave out what the customer bought in the model's data")
    exclude: list[Sku] = Field([], max_length=SERVING.max_skus, description="SKUs never to recommend")


class SimilarRequest(Request):
    sku: Sku
    k: int = Field(10, ge=1, le=SERVING.max_k)


class Ranked(BaseModel):
    sku: str
    score: float
    description: str | None


class Recommendation(BaseModel):
    customer_id: str
    fallback: str | None = Field(
        description='null for a personal list; "popularity" for a customer the model '
        "never saw, who gets the recently most popular items"
    )
    recommendations: list[Ranked]


class Similar(BaseModel):
    sku: str
    similar: list[Ranked] = Field(description="most often bought by the same customers (cosine), best first")


class RecommenderMetadata(ModelMetadata):
    customers: int
    skus: int
    history_end: date


PATHS = ("/recommend", "/similar")
COUNTED = {"/recommend": ("exclude", SERVING.max_skus, "serving.max_skus")}
OPERATIONS = {
    ("/recommend", "post"): ("400", "401", "413", "415", "422", "500", "503", "504"),
    ("/similar", "post"): ("400", "401", "404", "413", "415", "500", "503", "504"),
}
# BentoML writes a union field (`str | int`, `str | None`) as its first type: these bodies are documented
# by pydantic's own schemas.
BODIES = {"/recommend": (RecommendRequest, Recommendation), "/similar": (SimilarRequest, Similar)}
HEADERS: dict = {}
METADATA = {"recommender": (RecommenderMetadata | None, Field(None, description="null: this Bento has no recommender"))}
ABOUT = f"recommendations from {META['model_name']} version {META['model_version']}" if META else None


class Endpoints:
    @bentoml.api(input_spec=batch_of_one(RecommendRequest), output_spec=single(Recommendation))
    def recommend(self, requests: list[RecommendRequest]) -> list:
        """The customer's top k SKUs, best first; a customer the model never saw gets popular ones."""
        (r,) = requests
        if self.recommender is None:
            return [_no_recommender()]
        customer = str(r.customer_id)
        lists = self.recommender.recommend([customer], r.k, r.exclude_purchased, set(r.exclude))
        return [{"customer_id": customer, "fallback": lists.fallback[0], "recommendations": self.ranked(lists[0])}]

    @bentoml.api(input_spec=batch_of_one(SimilarRequest), output_spec=single(Similar))
    def similar(self, requests: list[SimilarRequest]) -> list:
        """The k SKUs most often bought by the customers who bought `sku`."""
        (r,) = requests
        if self.recommender is None:
            return [_no_recommender()]
        try:
            ranked = self.recommender.similar(r.sku, r.k)
        except KeyError:
            why = f"unknown SKU {r.sku!r}: the recommender never saw it sold; GET /metadata counts what it knows"
            return [error_response(404, "unknown SKU", [{"type": "unknown_sku", "loc": ["sku"], "msg": why}])]
        return [{"sku": r.sku, "similar": self.ranked(ranked)}]

    def ranked(self, ranked: list[tuple[str, float]]) -> list[dict]:
        return [{"sku": s, "score": v, "description": self.recommender.descriptions.get(s)} for s, v in ranked]


def load(service) -> None:
    service.recommender = None
    if META:
        service.recommender = packaged(service, FAMILY).recommender
        service.recommender.recommend([service.recommender.customers[0]], 1)
        service.recommender.similar(service.recommender.items[0], 1)


def headers() -> dict[str, str]:
    return lineage(META) if META else {}


def describe(service) -> dict:
    r = service.recommender
    if r is None:
        return {"recommender": None}
    return {
        "recommender": {**META, "customers": len(r.customers), "skus": len(r.items), "history_end": r.cutoff.date().isoformat()}
    }


def example(path: str, service) -> dict:
    r = service.recommender
    if path == "/recommend":
        return {"customer_id": r.customers[0] if r else "12346", "k": 5, "exclude_purchased": False, "exclude": []}
    return {"sku": r.items[0] if r else service.forecaster.skus[0], "k": 5}


def _no_recommender() -> JSONResponse:
    return JSONResponse(
        {
            "error": "this Bento was packaged without a recommender: run the pipeline with the "
            "recommendation family, then serve the new Bento"
        },
        status_code=503,
    )
