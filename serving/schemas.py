"""The request and answer bodies. pydantic checks every field, so a bad one is a 400 naming it; the limits
come from the Bento (`serving.bento`), so the schemas and the OpenAPI document state them."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from serving.bento import MAX_HORIZON, SERVING, TRAINED_FLAGS, TRAINED_FOR
from supplyml import planning

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
                raise ValueError(
                    f"this model was trained without {name} flags (its data had none), so it cannot "
                    f"use them; send no {name} days set to 1"
                )
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
    rules = [
        {
            "oneOf": [
                {
                    "properties": {
                        "lead_time_days": {"minimum": lead, "maximum": lead},
                        "review_period_days": {"maximum": MAX_HORIZON - lead},
                    }
                }
                for lead in range(MAX_HORIZON)
            ]
        }
    ]
    if TRAINED_FOR:
        rules.append(
            {
                "anyOf": [
                    {"properties": {"policy": {"not": {"enum": [planning.LEARNED]}}}},
                    {
                        "properties": {
                            "lead_time_days": {"enum": [TRAINED_FOR[0]]},
                            "review_period_days": {"enum": [TRAINED_FOR[1]]},
                        }
                    },
                ]
            }
        )
    schema["allOf"] = rules


# "learned" only where this Bento has a learned policy.
Decider = Literal[(planning.BASE_STOCK, planning.CLASSICAL, *([planning.LEARNED] if TRAINED_FOR else []))]  # type: ignore[valid-type]


class Item(Request):
    """lead_time_days + review_period_days is at most the model's maximum horizon; `promo` and `event` days
    past it are not used."""

    model_config = ConfigDict(strict=True, json_schema_extra=_item_rules)

    sku: Sku
    on_hand: Units
    on_order: Units = Field(0.0, description="units ordered, not yet received; the learned policy counts them as due tomorrow")
    lead_time_days: int = Field(ge=0, le=MAX_HORIZON - 1)
    review_period_days: int = Field(ge=1, le=MAX_HORIZON)
    service_level: Level
    promo: Promo = Field([], description="known promotion days: " + FLAGS_DOC.format("1: on promotion"))
    event: Event = Field([], description="known event days: " + FLAGS_DOC.format("1: a holiday or event"))
    policy: Decider | None = Field(
        None,
        description="who decides: base stock on the forecast's paths, the classical policy (moving average + "
        "normal safety stock), or the learned policy (only for the lead time and review period it "
        "was trained for). Default: the learned policy where this Bento has one for the item's lead "
        "time and review period, else the textbook policy that won on the model's held-out origins "
        "(`default_policy` in /metadata)",
    )

    @model_validator(mode="after")
    def _within_horizon(self) -> Item:
        days = self.lead_time_days + self.review_period_days
        if days > MAX_HORIZON:
            raise ValueError(
                f"lead_time_days + review_period_days = {days} exceeds this model's maximum horizon of {MAX_HORIZON} days"
            )
        if self.policy == planning.LEARNED and (self.lead_time_days, self.review_period_days) != TRAINED_FOR:
            raise ValueError(
                f"the learned policy was trained for lead_time_days = {TRAINED_FOR[0]} and "
                f"review_period_days = {TRAINED_FOR[1]}, not {self.lead_time_days} and "
                f'{self.review_period_days}; send "policy": "base_stock" for other settings'
            )
        return self


class ReplenishRequest(Request):
    items: list[Item] = Field(min_length=1, max_length=SERVING.max_items)


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


class SkuForecast(BaseModel):
    sku: str
    dates: list[date]
    mean: list[float]
    quantiles: dict[str, list[float]] = Field(description='per requested level, keyed as written ("0.1", "0.5")')


class Decision(BaseModel):
    sku: str
    policy: Literal[planning.BASE_STOCK, planning.CLASSICAL, planning.LEARNED] = Field(  # type: ignore[valid-type]
        description="who decided order_quantity; for the learned policy the other figures (base stock's S among them) "
        "describe the forecast, for the classical policy its own level"
    )
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


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")  # lineage tags and whatever else packaging recorded

    model_name: str
    model_version: str
    metrics: dict[str, float]


class RecommenderMetadata(ModelMetadata):
    customers: int
    skus: int
    history_end: date


class PolicyMetadata(ModelMetadata):
    policy: dict[str, Any] = Field(description="algorithm, lead_time, review_period and n_actions it was trained for")


class Metadata(ModelMetadata):
    max_horizon: int
    ma_window: int
    replenish_samples: int
    seed: int
    default_policy: Literal[planning.BASE_STOCK, planning.CLASSICAL] = Field(  # type: ignore[valid-type]
        planning.BASE_STOCK, description="who decides an item that names no policy, where no learned policy does"
    )
    bento: str | None
    bento_model: str
    skus: list[str]
    history_end: date
    recommender: RecommenderMetadata | None = Field(None, description="null: this Bento has no recommender")
    policy: PolicyMetadata | None = Field(None, description="null: this Bento has no learned policy")
