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

import asyncio
import functools
import gc
import hmac
import json
import os
import shlex
from datetime import date
from typing import Annotated, Any, Literal

import bentoml
import torch
from _bentoml_sdk.io_models import IORootModel
from bentoml._internal.server.http import traffic
from fastapi import FastAPI
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic_core import from_json
from starlette.responses import JSONResponse, Response

from supplyml import planning
from supplyml.config import load_config


class Args(BaseModel):
    # serving/package.py pins the exact tag as a Bento argument, so a Bento keeps serving the model it
    # was built with even after newer imports; the fallbacks serve ad-hoc `bentoml serve serving.service:...`.
    model_tag: str = os.environ.get("SUPPLYML_BENTO_MODEL", "supplyml-forecaster:latest")
    recommender_tag: str = os.environ.get("SUPPLYML_BENTO_RECOMMENDER", "")  # "": a Bento without recommendations
    policy_tag: str = os.environ.get("SUPPLYML_BENTO_POLICY", "")  # "": a Bento without a learned policy


ARGS = bentoml.use_arguments(Args)
MODEL = bentoml.models.BentoModel(ARGS.model_tag)
META = dict(bentoml.models.get(MODEL.tag).info.metadata)
RECOMMENDER = bentoml.models.BentoModel(ARGS.recommender_tag) if ARGS.recommender_tag else None
R_META = dict(bentoml.models.get(RECOMMENDER.tag).info.metadata) if RECOMMENDER else None
POLICY = bentoml.models.BentoModel(ARGS.policy_tag) if ARGS.policy_tag else None
P_META = dict(bentoml.models.get(POLICY.tag).info.metadata) if POLICY else None
TRAINED_FOR = (P_META["policy"]["lead_time"], P_META["policy"]["review_period"]) if P_META else None
# The textbook policy that won on the forecaster's held-out origins decides where the learned one does not.
DEFAULT_POLICY = META.get("default_policy", planning.BASE_STOCK)
MA_WINDOW = int(META.get("ma_window", 28))
# The horizon limit comes from the model's metadata (written at packaging from the config), so request
# schemas and the OpenAPI page state it, and a violation is an ordinary field error.
MAX_HORIZON = int(META["max_horizon"])
# Limits and batching: the config file in the Bento, then serve-time overrides in the --set syntax.
SERVING = load_config(overrides=shlex.split(os.environ.get("SUPPLYML_SET", ""))).serving
TOKEN = os.environ.get("SUPPLYML_API_TOKEN") or None  # read once, when the server starts; never logged
OPEN_PATHS = {"/livez", "/healthz", "/readyz", "/metrics"}  # probes and scrapers carry no token


def _lineage(meta: dict) -> dict[str, str]:
    return {"X-Supplyml-Model": str(meta["model_name"]), "X-Supplyml-Model-Version": str(meta["model_version"]),
            "X-Supplyml-Data-Md5": str(meta.get("dvc_md5", "unknown"))}


LINEAGE = _lineage(META)
RECOMMEND_PATHS = {"/recommend", "/similar"}  # answered by the recommender: its lineage on every answer
R_LINEAGE = _lineage(R_META) if R_META else {}
# /replenish answers name the learned policy too when one is packaged (whether or not it decided).
P_LINEAGE = {"X-Supplyml-Policy": str(P_META["model_name"]), "X-Supplyml-Policy-Version": str(P_META["model_version"])
             } if P_META else {}
# Flags the model learnt from (all, for a Bento packaged before this was recorded).
TRAINED_FLAGS = set(META.get("trained_flags", ",".join(planning.FLAGS)).split(",")) - {""}
COUNTED = {"/forecast": ("skus", SERVING.max_skus, "serving.max_skus"),
           "/replenish": ("items", SERVING.max_items, "serving.max_items"),
           "/recommend": ("exclude", SERVING.max_skus, "serving.max_skus")}
JSON_PATHS = {*COUNTED, "/similar"}

Sku = Annotated[str, Field(min_length=1)]
Level = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
Units = Annotated[float, Field(ge=0, allow_inf_nan=False)]
FLAGS_DOC = "0/1 per day from the first forecast day ({}); days not given are 0, days past the horizon are not used"


def _flags(name: str):
    """0/1 days of flag `name`; only 0 (so the schema says so) when the model was trained without it."""
    if name in TRAINED_FLAGS:
        day = Annotated[int, Field(ge=0, le=1)]
    else:
        def untrained(value: int) -> int:
            if value != 0:
                raise ValueError(f"this model was trained without {name} flags (its data had none), so it cannot "
                                 f"use them; send no {name} days set to 1")
            return value
        day = Annotated[int, AfterValidator(untrained), WithJsonSchema({"type": "integer", "enum": [0]})]
    return Annotated[list[day], Field(max_length=MAX_HORIZON)]


Promo, Event = _flags("promo"), _flags("event")


class Request(BaseModel):
    # Strict: a body the schema calls invalid ("7" for an integer) is refused, not coerced.
    model_config = ConfigDict(strict=True)


class ForecastRequest(Request):
    """`promo` and `event` may hold a whole calendar: SKUs not in `skus` and days past `horizon` are not used."""

    skus: list[Sku] = Field(min_length=1, max_length=SERVING.max_skus)
    horizon: int = Field(ge=1, le=MAX_HORIZON)
    quantiles: list[Level] = Field(planning.QUANTILES, min_length=1)
    promo: dict[str, Promo] = Field({}, description="known promotions per SKU: " + FLAGS_DOC.format("1: on promotion"))
    event: dict[str, Event] = Field({}, description="known events per SKU: " + FLAGS_DOC.format("1: a holiday or event"))


def _item_rules(schema: dict) -> None:
    """What holds between an item's fields, in the schema's own terms, so that the document accepts what the
    server accepts: L + R within the model's horizon (one exclusive branch per lead time), and the learned
    policy only at the lead time and review period it was trained for."""
    rules = [{"oneOf": [{"properties": {"lead_time_days": {"minimum": lead, "maximum": lead},
                                        "review_period_days": {"maximum": MAX_HORIZON - lead}}}
                        for lead in range(MAX_HORIZON)]}]
    if TRAINED_FOR:
        rules.append({"anyOf": [{"properties": {"policy": {"not": {"enum": [planning.LEARNED]}}}},
                                {"properties": {"lead_time_days": {"enum": [TRAINED_FOR[0]]},
                                                "review_period_days": {"enum": [TRAINED_FOR[1]]}}}]})
    schema["allOf"] = rules


# "learned" only where this Bento has a learned policy.
Decider = Literal[(planning.BASE_STOCK, planning.CLASSICAL, *([planning.LEARNED] if TRAINED_FOR else []))]  # type: ignore[valid-type]


class Item(Request):
    """lead_time_days + review_period_days is at most the model's maximum horizon; `promo` and `event` days
    past it are not used."""

    model_config = ConfigDict(strict=True, json_schema_extra=_item_rules)

    sku: Sku
    on_hand: Units
    on_order: Units = Field(0.0, description="units ordered, not yet received; the learned policy counts them as "
                                              "due tomorrow")
    lead_time_days: int = Field(ge=0, le=MAX_HORIZON - 1)
    review_period_days: int = Field(ge=1, le=MAX_HORIZON)
    service_level: Level
    promo: Promo = Field([], description="known promotion days: " + FLAGS_DOC.format("1: on promotion"))
    event: Event = Field([], description="known event days: " + FLAGS_DOC.format("1: a holiday or event"))
    policy: Decider | None = Field(
        None, description="who decides: base stock on the forecast's paths, the classical policy (moving average + "
                          "normal safety stock), or the learned policy (only for the lead time and review period it "
                          "was trained for). Default: the learned policy where this Bento has one for the item's lead "
                          "time and review period, else the textbook policy that won on the model's held-out origins "
                          "(`default_policy` in /metadata)")

    @model_validator(mode="after")
    def _within_horizon(self) -> Item:
        days = self.lead_time_days + self.review_period_days
        if days > MAX_HORIZON:
            raise ValueError(f"lead_time_days + review_period_days = {days} exceeds this model's maximum horizon "
                             f"of {MAX_HORIZON} days")
        if self.policy == planning.LEARNED and (self.lead_time_days, self.review_period_days) != TRAINED_FOR:
            raise ValueError(f"the learned policy was trained for lead_time_days = {TRAINED_FOR[0]} and "
                             f"review_period_days = {TRAINED_FOR[1]}, not {self.lead_time_days} and "
                             f"{self.review_period_days}; send \"policy\": \"base_stock\" for other settings")
        return self


class ReplenishRequest(Request):
    items: list[Item] = Field(min_length=1, max_length=SERVING.max_items)


class RecommendRequest(Request):
    customer_id: str | int = Field(description="the order lines' CustomerID (17850 and \"17850\" are the same "
                                               "customer); one the model never saw gets popular items")
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
    fallback: str | None = Field(description='null for a personal list; "popularity" for a customer the model '
                                             "never saw, who gets the recently most popular items")
    recommendations: list[Ranked]


class Similar(BaseModel):
    sku: str
    similar: list[Ranked] = Field(description="most often bought by the same customers (cosine), best first")


class SkuForecast(BaseModel):
    sku: str
    dates: list[date]
    mean: list[float]
    quantiles: dict[str, list[float]] = Field(description='per requested level, keyed as written ("0.1", "0.5")')


class Decision(BaseModel):
    sku: str
    policy: Literal["base_stock", "classical", "learned"] = Field(
        description="who decided order_quantity; for the learned policy the other figures (base stock's S among them) "
                    "describe the forecast, for the classical policy its own level")
    order_quantity: float
    order_up_to: float
    reorder_point: float
    safety_stock: float
    expected_demand: float


class ErrorDetail(BaseModel):
    type: str
    loc: list[str | int] = Field(description="where: the field's path in the body, or the header")
    msg: str
    url: str | None = None


class Error(BaseModel):
    """Every 4xx this service writes: what went wrong, and per problem where."""

    error: str
    detail: list[ErrorDetail]


class ServerError(BaseModel):
    error: str


class RecommenderMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    model_name: str
    model_version: str
    metrics: dict[str, float]
    customers: int
    skus: int
    history_end: date


class PolicyMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    model_name: str
    model_version: str
    metrics: dict[str, float]
    policy: dict[str, Any] = Field(description="algorithm, lead_time, review_period and n_actions it was trained for")


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")  # lineage tags and whatever else packaging recorded

    model_name: str
    model_version: str
    metrics: dict[str, float]
    max_horizon: int
    replenish_samples: int
    seed: int
    default_policy: Literal["base_stock", "classical"] = Field(
        planning.BASE_STOCK, description="who decides an item that names no policy, where no learned policy does")
    bento: str | None
    bento_model: str
    skus: list[str]
    history_end: date
    recommender: RecommenderMetadata | None = Field(None, description="null: this Bento has no recommender")
    policy: PolicyMetadata | None = Field(None, description="null: this Bento has no learned policy")


def _batch_of_one(request: type[BaseModel]) -> type[IORootModel]:
    """An input spec whose body is one `request` and whose value is a list of it: the list that BentoML's
    adaptive batching joins across concurrent requests (a batch of one when batching is off)."""

    class Input(IORootModel[list[request]]):
        @classmethod
        def model_validate_json(cls, json_data, **kwargs):
            return cls.model_construct(root=[request.model_validate_json(json_data)])

        @classmethod
        def model_validate(cls, obj, **kwargs):  # form-encoded bodies arrive as a dict
            return cls.model_construct(root=[request.model_validate(obj)])

        @classmethod
        def model_json_schema(cls, *args, **kwargs):
            return request.model_json_schema(*args, **kwargs)

    Input.__root_input__ = True
    return Input


def _answers(key: str, model: type[BaseModel]) -> type[bentoml.IODescriptor]:
    """The output spec for `{key: [model]}`; the API returns each request's answer list, or its error response."""

    class Output(bentoml.IODescriptor):
        @classmethod
        async def to_http_response(cls, obj: list, serde) -> Response:
            (answer,) = obj  # the slice of the batch that is this request's
            return answer if isinstance(answer, Response) else JSONResponse({key: answer})

    return create_model(f"{key.title()}Answer", __base__=Output, **{key: (list[model], ...)})


def _single(model: type[BaseModel]) -> type[bentoml.IODescriptor]:
    """The output spec for one `model` answer, or its error response."""

    class Output(bentoml.IODescriptor):
        @classmethod
        async def to_http_response(cls, obj: list, serde) -> Response:
            (answer,) = obj
            return answer if isinstance(answer, Response) else JSONResponse(answer)

    return create_model(f"{model.__name__}Answer", __base__=(Output, model))


TIMEOUT_S = 120  # to the first byte of an answer: 1000 SKUs at 56 days on a full-size network take ~20 s
BATCHING = ({"batchable": True, "max_batch_size": SERVING.max_batch_size, "max_latency_ms": SERVING.max_latency_ms}
            if SERVING.batching else {})
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
        planning.replenish(self.forecaster, [{"sku": sku, "on_hand": 0, "lead_time_days": 0, "review_period_days": 1,
                                              "service_level": 0.5}], META["replenish_samples"], META["seed"])
        if self.policy is not None:
            L, R = TRAINED_FOR
            planning.replenish(self.forecaster, [{"sku": sku, "on_hand": 0, "lead_time_days": L, "review_period_days": R,
                                                  "service_level": 0.5}], META["replenish_samples"], META["seed"],
                               self.policy)
        gc.freeze()

    @bentoml.api(input_spec=_batch_of_one(ForecastRequest), output_spec=_answers("forecasts", SkuForecast), **BATCHING)
    def forecast(self, requests: list[ForecastRequest]) -> list:
        """Mean and quantiles per SKU and day, from the day after the model's history ends."""
        return self._answer(requests, [[(["skus", i], s) for i, s in enumerate(r.skus)] for r in requests],
                            lambda ok: planning.forecast_many(self.forecaster, [r.model_dump() for r in ok]))

    @bentoml.api(input_spec=_batch_of_one(ReplenishRequest), output_spec=_answers("decisions", Decision), **BATCHING)
    def replenish(self, requests: list[ReplenishRequest]) -> list:
        """A periodic-review decision per item: base stock, the classical policy, or the learned policy."""
        return self._answer(requests, [[(["items", i, "sku"], it.sku) for i, it in enumerate(r.items)] for r in requests],
                            lambda ok: planning.replenish_many(self.forecaster, [r.items for r in ok],
                                                               META["replenish_samples"], META["seed"], self.policy,
                                                               DEFAULT_POLICY, MA_WINDOW))

    @bentoml.api(input_spec=_batch_of_one(RecommendRequest), output_spec=_single(Recommendation))
    def recommend(self, requests: list[RecommendRequest]) -> list:
        """The customer's top k SKUs, best first; a customer the model never saw gets popular ones."""
        (r,) = requests
        if self.recommender is None:
            return [_no_recommender()]
        customer = str(r.customer_id)
        lists = self.recommender.recommend([customer], r.k, r.exclude_purchased, set(r.exclude))
        return [{"customer_id": customer, "fallback": lists.fallback[0], "recommendations": self._ranked(lists[0])}]

    @bentoml.api(input_spec=_batch_of_one(SimilarRequest), output_spec=_single(Similar))
    def similar(self, requests: list[SimilarRequest]) -> list:
        """The k SKUs most often bought by the customers who bought `sku`."""
        (r,) = requests
        if self.recommender is None:
            return [_no_recommender()]
        try:
            ranked = self.recommender.similar(r.sku, r.k)
        except KeyError:
            return [_error(404, "unknown SKU", [{"type": "unknown_sku", "loc": ["sku"], "msg": (
                f"unknown SKU {r.sku!r}: the recommender never saw it sold; GET /metadata counts what it knows")}])]
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
            recommender = {**R_META, "customers": len(self.recommender.customers), "skus": len(self.recommender.items),
                           "history_end": self.recommender.cutoff.date().isoformat()}
        return {**META, "bento": f"{bento.bento_name}:{bento.bento_version}" if bento.bento_name else None,
                "bento_model": str(self.model.tag), "skus": self.forecaster.skus,
                "history_end": self.forecaster.last_date.date().isoformat(), "recommender": recommender,
                "policy": P_META, "default_policy": DEFAULT_POLICY}

    # The mounted app's routes come before BentoML's own /docs.json, so this one answers it.
    @info.get("/docs.json", include_in_schema=False)
    def docs(self) -> dict:
        r = self.recommender
        skus = tuple(self.forecaster.skus[:2])
        return contract(skus, r.customers[0] if r else "12346", r.items[0] if r else skus[0])


def _no_recommender() -> JSONResponse:
    return JSONResponse({"error": "this Bento was packaged without a recommender: run the pipeline with the "
                                  "recommendation family, then serve the new Bento"}, status_code=503)


def _unknown_skus(requested: list[tuple[list, str]], known: set[str]) -> JSONResponse | None:
    detail = [{"type": "unknown_sku", "loc": loc, "msg": f"unknown SKU {sku!r}; GET /metadata lists the SKUs this model knows"}
              for loc, sku in requested if sku not in known]
    return _error(404, f"{len(detail)} unknown SKU(s)", detail) if detail else None


class _Timeout(traffic.TimeoutMiddleware):
    """BentoML's request timeout (504 when no answer has started in `traffic.timeout` s), with its timer
    cancelled: BentoML 1.4.39 leaves it scheduled, which keeps each request's context (span, futures)
    alive for the whole timeout, and under load full collections walking them stalled every request."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        started = False

        async def send_started(message) -> None:
            nonlocal started
            if not started:
                started = True
                deadline.reschedule(None)  # as BentoML's: a started answer may take as long as it needs
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as deadline:
                return await self.app(scope, receive, send_started)
        except TimeoutError:
            if started:
                raise
        await JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"},
                           status_code=504)(scope, receive, send)


traffic.TimeoutMiddleware = _Timeout  # BentoML imports it from there when it builds the app


def _error(status: int, error: str, detail: list[dict], headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


class Guard:
    """ASGI middleware for what holds on every route but the probes: the token, the limits and the lineage
    headers. Limits are answered before anything parses the body."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if TOKEN and not _authorized(scope):
            detail = [{"type": "unauthorized", "loc": ["header", "Authorization"],
                       "msg": "send Authorization: Bearer <token>, the token this server was started with"}]
            return await _error(401, "missing or wrong API token", detail, {"WWW-Authenticate": "Bearer"})(
                scope, receive, send)
        send = _with_lineage(send, R_LINEAGE if scope["path"] in RECOMMEND_PATHS else
                             {**LINEAGE, **P_LINEAGE} if scope["path"] == "/replenish" else LINEAGE)
        body = await _body(receive, SERVING.max_body_bytes)
        if body is None:
            detail = [{"type": "too_large", "loc": ["body"],
                       "msg": f"the body exceeds serving.max_body_bytes = {SERVING.max_body_bytes} bytes"}]
            return await _error(413, "request body too large", detail)(scope, receive, send)
        if scope["path"] in JSON_PATHS:
            media = dict(scope["headers"]).get(b"content-type", b"application/json").split(b";")[0].strip().lower()
            if media != b"application/json":  # BentoML would try its form and multipart parsers
                detail = [{"type": "media_type", "loc": ["header", "Content-Type"],
                           "msg": f"send Content-Type: application/json, not {media.decode('latin-1')!r}"}]
                return await _error(415, "the body must be JSON", detail)(scope, receive, send)
            try:  # pydantic's parser, as the API's: nesting past its depth limit is an error, not a RecursionError
                value = from_json(body)
            except ValueError as e:
                detail = [{"type": "json_invalid", "loc": ["body"], "msg": f"the body is not valid JSON: {e}"}]
                return await _error(400, "the body is not valid JSON", detail)(scope, receive, send)
            field, limit, name = COUNTED.get(scope["path"], (None, 0, None))
            n = len(value[field]) if field and isinstance(value, dict) and isinstance(value.get(field), list) else 0
            if field and n > limit:
                detail = [{"type": "too_many", "loc": [field], "msg": f"{n} {field} exceed {name} = {limit}; split the request"}]
                return await _error(422, f"too many {field}", detail)(scope, receive, send)
        await self.app(scope, _replay(body, receive), send)


def _authorized(scope) -> bool:
    value = dict(scope["headers"]).get(b"authorization", b"")
    scheme, _, credentials = value.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), TOKEN.encode())


def _with_lineage(send, lineage: dict[str, str]):
    headers = [(k.lower().encode(), v.encode()) for k, v in lineage.items()]

    async def send_with_lineage(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)

    return send_with_lineage


async def _body(receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def again():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again



SupplyForecast.add_asgi_middleware(Guard)


# -- the contract: BentoML's generated document, with the bodies this service really writes -------------------
REF = "#/components/schemas/{model}"


def _body_doc(description: str, model: str, headers: dict | None = None) -> dict:
    doc = {"description": description, "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}}
    return {**doc, "headers": headers} if headers else doc


ERRORS = {
    "400": _body_doc("A field is invalid: `detail` names each, by `loc` (its path in the body) and `msg`", "Error"),
    "401": _body_doc("The server was started with SUPPLYML_API_TOKEN and the request lacks `Authorization: Bearer "
                     "<token>` or has another token", "Error", {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    "404": _body_doc("A SKU the model does not know: `detail` names each (GET /metadata lists the forecaster's)",
                     "Error"),
    "413": _body_doc("The body is larger than serving.max_body_bytes", "Error"),
    "415": _body_doc("The body is not sent as application/json", "Error"),
    "422": _body_doc("More SKUs (/forecast), items (/replenish) or excluded SKUs (/recommend) than serving.max_skus or "
                     "serving.max_items", "Error"),
    "500": _body_doc("A fault of the server; its log has the traceback", "ServerError"),
    "503": _body_doc("Overloaded: a request waited longer than serving.max_latency_ms for a batch; on /recommend and "
                     "/similar also: this Bento was packaged without a recommender", "ServerError"),
    "504": _body_doc(f"No answer started within {TIMEOUT_S} s", "ServerError"),
}
LINEAGE_DOC = {name: {"description": what, "required": True, "schema": {"type": "string"}} for name, what in (
    ("X-Supplyml-Model", "registered model name"), ("X-Supplyml-Model-Version", "registered model version"),
    ("X-Supplyml-Data-Md5", "DVC md5 of the training data"))}
RECOMMEND_BODIES_BY_PATH = {"/recommend": (RecommendRequest, Recommendation), "/similar": (SimilarRequest, Similar)}
RECOMMEND_BODIES = {m.__name__: m for pair in RECOMMEND_BODIES_BY_PATH.values() for m in pair}
OPERATIONS = {("/forecast", "post"): ("400", "401", "404", "413", "415", "422", "500", "503", "504"),
              ("/replenish", "post"): ("400", "401", "404", "413", "415", "422", "500", "503", "504"),
              ("/recommend", "post"): ("400", "401", "413", "415", "422", "500", "503", "504"),
              ("/similar", "post"): ("400", "401", "404", "413", "415", "500", "503", "504"),
              ("/metadata", "get"): ("401",)}


@functools.cache
def contract(skus: tuple[str, ...], customer: str, item: str) -> dict:
    """/docs.json: OpenAPI 3.0.3 (what client generators read best), with the real error bodies, the lineage
    headers, /metadata's answer, examples on the model's `skus` and, when a token is required, the bearer scheme."""
    spec = json.loads(json.dumps(SupplyForecast.openapi_spec.asdict()))
    spec["openapi"] = "3.0.3"
    recommender = f"; recommendations from {R_META['model_name']} version {R_META['model_version']}" if R_META else ""
    spec["info"] = {"title": "supplyml", "version": str(META["model_version"]),
                    "description": f"Demand forecasts and replenishment decisions from {META['model_name']} "
                                   f"version {META['model_version']}{recommender}"}
    schemas = spec["components"]["schemas"]
    for stale in ("InvalidArgument", "NotFound", "InternalServerError"):  # BentoML's, not these bodies
        schemas.pop(stale)
    for model in (Error, ServerError, Metadata, *RECOMMEND_BODIES.values()):
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for (path, method), statuses in OPERATIONS.items():
        operation = spec["paths"][path][method]
        operation["responses"] = {"200": {**operation["responses"]["200"], "headers": LINEAGE_DOC},
                                  **{s: ERRORS[s] for s in statuses}}
        if "requestBody" in operation:
            operation["requestBody"]["required"] = True
            operation["requestBody"]["content"]["application/json"]["example"] = _example(path, skus, customer, item)
        if TOKEN:
            operation["security"] = [{"bearer": []}]
    spec["paths"]["/metadata"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "$ref": REF.format(model="Metadata")}
    # BentoML writes a union field (`str | None`, `str | int`) as its first type; pydantic's own schemas
    # say what these bodies really take and return.
    for path, (request, answer) in RECOMMEND_BODIES_BY_PATH.items():
        operation = spec["paths"][path]["post"]
        operation["requestBody"]["content"]["application/json"]["schema"] = {"$ref": REF.format(model=request.__name__)}
        operation["responses"]["200"]["content"]["application/json"]["schema"] = {"$ref": REF.format(model=answer.__name__)}
    return _openapi30(spec)


def _example(path: str, skus: tuple[str, ...], customer: str, item: str) -> dict:
    if path == "/recommend":
        return {"customer_id": customer, "k": 5, "exclude_purchased": False, "exclude": []}
    if path == "/similar":
        return {"sku": item, "k": 5}
    if path == "/forecast":
        promo = {"promo": {skus[0]: [0, 0, 1, 1][:MAX_HORIZON]}} if "promo" in TRAINED_FLAGS else {}
        return {"skus": list(skus), "horizon": min(14, MAX_HORIZON), "quantiles": [0.1, 0.5, 0.9], **promo}
    lead = min(7, MAX_HORIZON // 2)
    return {"items": [{"sku": skus[0], "on_hand": 120, "on_order": 0, "lead_time_days": lead,
                       "review_period_days": min(7, MAX_HORIZON - lead), "service_level": 0.95}]}


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
