"""The Bento service: POST /forecast, POST /replenish and GET /metadata over one packaged forecaster, and
POST /recommend and POST /similar over the recommender packaged beside it (one service, so a planning system
has one address, one token and one set of limits; each family's lineage headers name its own model).
/replenish decides by base stock, or by the learned policy packaged beside them (`"policy": "learned"`;
the default for the lead time and review period it was trained for, since only a policy that passed its
gate is packaged).

A thin wrapper: pydantic checks every field (a bad one is a 400 naming it), an unknown SKU is a 404, and
every answer is computed by `supplyml.planning`. `Guard`, an ASGI middleware, applies what holds for every
route but the probes: the optional bearer token (401), the body-size, media-type and count limits (413,
415, 422) and the lineage headers. /docs.json is BentoML's OpenAPI document with the bodies this service
really writes. With `serving.batching` on, BentoML's adaptive batching (`batchable=True`) collects
concurrent requests and planning answers them with shared model calls.
"""

from __future__ import annotations

import functools
import gc

import bentoml
import torch
from fastapi import FastAPI
from starlette.responses import JSONResponse

from serving.adapters import answers, batch_of_one, single
from serving.bento import (
    ARGS,
    DEFAULT_POLICY,
    MAX_HORIZON,
    META,
    MODEL,
    P_META,
    POLICY,
    R_META,
    RECOMMENDER,
    SERVING,
    SETTINGS,
    TIMEOUT_S,
    TRAINED_FOR,
)
from serving.contract import contract
from serving.middleware import Guard, error_response, install_timeout
from serving.schemas import (
    Decision,
    ForecastRequest,
    Metadata,
    Recommendation,
    RecommendRequest,
    ReplenishRequest,
    Similar,
    SimilarRequest,
    SkuForecast,
)
from supplyml import planning

BATCHING = (
    {"batchable": True, "max_batch_size": SERVING.max_batch_size, "max_latency_ms": SERVING.max_latency_ms}
    if SERVING.batching
    else {}
)
info = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # GET routes; the one contract is /docs.json


@bentoml.service(traffic={"timeout": TIMEOUT_S})
@bentoml.asgi_app(info, path="/")
class SupplyForecast:
    model = MODEL
    if RECOMMENDER is not None:
        recommender_model = RECOMMENDER
    if POLICY is not None:
        policy_model = POLICY

    def __init__(self) -> None:
        torch.set_num_threads(SERVING.torch_threads)
        self.forecaster = bentoml.mlflow.load_model(self.model).unwrap_python_model().forecaster
        self.known = set(self.forecaster.skus)
        self.recommender = None
        if RECOMMENDER is not None:
            self.recommender = bentoml.mlflow.load_model(self.recommender_model).unwrap_python_model().recommender
            self.recommender.recommend([self.recommender.customers[0]], 1)
            self.recommender.similar(self.recommender.items[0], 1)
        self.policy = None
        if POLICY is not None:
            self.policy = bentoml.mlflow.load_model(self.policy_model).unwrap_python_model()
        # Each code path once (statsforecast compiles its models on first use), then what is loaded by now
        # out of the collector's sight: ~600k objects that live as long as the process, which every full
        # collection walked, stalling all requests for ~0.5 s.
        sku = self.forecaster.skus[0]
        planning.forecast(self.forecaster, [sku], MAX_HORIZON, [0.5])
        planning.replenish(
            self.forecaster,
            [{"sku": sku, "on_hand": 0, "lead_time_days": 0, "review_period_days": 1, "service_level": 0.5}],
            ARGS.replenish_samples,
            ARGS.seed,
        )
        if self.policy is not None:
            L, R = TRAINED_FOR
            planning.replenish(
                self.forecaster,
                [{"sku": sku, "on_hand": 0, "lead_time_days": L, "review_period_days": R, "service_level": 0.5}],
                ARGS.replenish_samples,
                ARGS.seed,
                self.policy,
            )
        gc.freeze()

    @bentoml.api(input_spec=batch_of_one(ForecastRequest), output_spec=answers("forecasts", SkuForecast), **BATCHING)
    def forecast(self, requests: list[ForecastRequest]) -> list:
        """Mean and quantiles per SKU and day, from the day after the model's history ends."""
        return self._answer(
            requests,
            [[(["skus", i], s) for i, s in enumerate(r.skus)] for r in requests],
            lambda ok: planning.forecast_many(self.forecaster, [r.model_dump() for r in ok]),
        )

    @bentoml.api(input_spec=batch_of_one(ReplenishRequest), output_spec=answers("decisions", Decision), **BATCHING)
    def replenish(self, requests: list[ReplenishRequest]) -> list:
        """A periodic-review decision per item: base stock, the classical policy, or the learned policy."""
        return self._answer(
            requests,
            [[(["items", i, "sku"], it.sku) for i, it in enumerate(r.items)] for r in requests],
            lambda ok: planning.replenish_many(
                self.forecaster,
                [r.items for r in ok],
                ARGS.replenish_samples,
                ARGS.seed,
                self.policy,
                DEFAULT_POLICY,
                ARGS.ma_window,
            ),
        )

    @bentoml.api(input_spec=batch_of_one(RecommendRequest), output_spec=single(Recommendation))
    def recommend(self, requests: list[RecommendRequest]) -> list:
        """The customer's top k SKUs, best first; a customer the model never saw gets popular ones."""
        (r,) = requests
        if self.recommender is None:
            return [_no_recommender()]
        customer = str(r.customer_id)
        lists = self.recommender.recommend([customer], r.k, r.exclude_purchased, set(r.exclude))
        return [{"customer_id": customer, "fallback": lists.fallback[0], "recommendations": self._ranked(lists[0])}]

    @bentoml.api(input_spec=batch_of_one(SimilarRequest), output_spec=single(Similar))
    def similar(self, requests: list[SimilarRequest]) -> list:
        """The k SKUs most often bought by the customers who bought `sku`."""
        (r,) = requests
        if self.recommender is None:
            return [_no_recommender()]
        try:
            ranked = self.recommender.similar(r.sku, r.k)
        except KeyError:
            return [
                error_response(
                    404,
                    "unknown SKU",
                    [
                        {
                            "type": "unknown_sku",
                            "loc": ["sku"],
                            "msg": (
                                f"unknown SKU {r.sku!r}: the recommender never saw it sold; GET /metadata counts what it knows"
                            ),
                        }
                    ],
                )
            ]
        return [{"sku": r.sku, "similar": self._ranked(ranked)}]

    def _ranked(self, ranked: list[tuple[str, float]]) -> list[dict]:
        return [{"sku": s, "score": v, "description": self.recommender.descriptions.get(s)} for s, v in ranked]

    def _answer(self, requests: list, skus: list[list[tuple[list, str]]], answer) -> list:
        # One request's unknown SKU must not fail the others batched with it: it gets its 404 here.
        refused = [_unknown_skus(s, self.known) for s in skus]
        answers = iter(answer([r for r, no in zip(requests, refused) if no is None]))
        return [no or next(answers) for no in refused]

    @info.get("/metadata", response_model=Metadata, response_model_exclude_unset=True)
    def metadata(self) -> dict:
        bento = bentoml.server_context
        recommender = None
        if self.recommender is not None:
            recommender = {
                **R_META,
                "customers": len(self.recommender.customers),
                "skus": len(self.recommender.items),
                "history_end": self.recommender.cutoff.date().isoformat(),
            }
        return {
            **META,
            **SETTINGS,
            "bento": f"{bento.bento_name}:{bento.bento_version}" if bento.bento_name else None,
            "bento_model": str(self.model.tag),
            "skus": self.forecaster.skus,
            "history_end": self.forecaster.last_date.date().isoformat(),
            "recommender": recommender,
            "policy": P_META,
            "default_policy": DEFAULT_POLICY,
        }

    # The mounted app's routes come before BentoML's own /docs.json, so this one answers it.
    @info.get("/docs.json", include_in_schema=False)
    def docs(self) -> dict:
        r = self.recommender
        skus = tuple(self.forecaster.skus[:2])
        return _document(skus, r.customers[0] if r else "12346", r.items[0] if r else skus[0])


@functools.cache
def _document(skus: tuple[str, ...], customer: str, item: str) -> dict:
    return contract(SupplyForecast.openapi_spec.asdict(), skus, customer, item)


def _no_recommender() -> JSONResponse:
    return JSONResponse(
        {
            "error": "this Bento was packaged without a recommender: run the pipeline with the "
            "recommendation family, then serve the new Bento"
        },
        status_code=503,
    )


def _unknown_skus(requested: list[tuple[list, str]], known: set[str]) -> JSONResponse | None:
    detail = [
        {"type": "unknown_sku", "loc": loc, "msg": f"unknown SKU {sku!r}; GET /metadata lists the SKUs this model knows"}
        for loc, sku in requested
        if sku not in known
    ]
    return error_response(404, f"{len(detail)} unknown SKU(s)", detail) if detail else None


install_timeout()  # before BentoML builds the app
SupplyForecast.add_asgi_middleware(Guard)
