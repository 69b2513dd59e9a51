"""The replenishment part of the service: POST /replenish. It decides on the forecaster's paths by base
stock or the classical policy, or by the learned policy packaged beside them (`"policy": "learned"`; the
default for the lead time and review period it was trained for, since only a policy that passed its gate
is packaged); elsewhere the textbook policy that won on the forecaster's held-out origins decides."""

from __future__ import annotations

from typing import Any, Literal

import bentoml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving import forecasting
from serving.adapters import answers, batch_of_one
from serving.bento import ARGS, BATCHING, MAX_HORIZON, METAS, SERVING, packaged
from serving.schemas import Level, ModelMetadata, Request, Sku, Units
from supplyml import planning

FAMILY = "policy"
META = METAS.get(FAMILY)  # None: a Bento without a learned policy
TRAINED_FOR = (META["policy"]["lead_time"], META["policy"]["review_period"]) if META else None
# The textbook policy that won on the forecaster's held-out origins decides where the learned one does not.
DEFAULT_POLICY = forecasting.META.get("policy", planning.BASE_STOCK)  # versions from before the choice: base stock


def _item_rules(schema: dict) -> None:
    """What holds between an item's fields, in the schema's own terms, so that the document accepts what the
    server accepts: L + R within the model's horizon (one exclusive branch per lead time), and the learned
    policy only at the lead time and review period it was trained for."""
    rules: list[dict] = [
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
    promo: forecasting.Promo = Field([], description="known promotion days: " + forecasting.FLAGS_DOC.format("1: on promotion"))
    event: forecasting.Event = Field([], description="known event days: " + forecasting.FLAGS_DOC.format("1: a holiday or event"))
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


class PolicyMetadata(ModelMetadata):
    policy: dict[str, Any] = Field(description="algorithm, lead_time, review_period and n_actions it was trained for")


PATHS = ("/replenish",)
COUNTED = {"/replenish": ("items", SERVING.max_items, "serving.max_items")}
OPERATIONS = {("/replenish", "post"): ("400", "401", "404", "413", "415", "422", "500", "503", "504")}
BODIES: dict = {}  # BentoML documents these bodies as pydantic does
HEADERS = {
    "/replenish": {
        name: {"description": f"{what}; sent when this Bento packages a learned policy", "schema": {"type": "string"}}
        for name, what in (
            ("X-Supplyml-Policy", "registered name of the learned policy"),
            ("X-Supplyml-Policy-Version", "its registered version"),
        )
    }
}
METADATA = {
    "default_policy": (
        Literal[planning.BASE_STOCK, planning.CLASSICAL],  # type: ignore[valid-type]
        Field(planning.BASE_STOCK, description="who decides an item that names no policy, where no learned policy does"),
    ),
    "policy": (PolicyMetadata | None, Field(None, description="null: this Bento has no learned policy")),
}
ABOUT = f"decisions by the learned policy {META['model_name']} version {META['model_version']}" if META else None


class Endpoints:
    @bentoml.api(input_spec=batch_of_one(ReplenishRequest), output_spec=answers("decisions", Decision), **BATCHING)
    def replenish(self, requests: list[ReplenishRequest]) -> list:
        """A periodic-review decision per item: base stock, the classical policy, or the learned policy."""
        return self.answer(
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


def load(service) -> None:
    """The learned policy, if packaged; every decision path once (after the forecaster's part loaded)."""
    service.policy = packaged(service, FAMILY) if META else None
    sku = service.forecaster.skus[0]
    for L, R in [(0, 1), *([TRAINED_FOR] if TRAINED_FOR else [])]:
        item = {"sku": sku, "on_hand": 0, "lead_time_days": L, "review_period_days": R, "service_level": 0.5}
        planning.replenish(service.forecaster, [item], ARGS.replenish_samples, ARGS.seed, service.policy)


def headers() -> dict[str, str]:
    """The forecaster's lineage, and the learned policy's when one is packaged (whether or not it decided)."""
    if META is None:
        return forecasting.headers()
    policy = {"X-Supplyml-Policy": str(META["model_name"]), "X-Supplyml-Policy-Version": str(META["model_version"])}
    return {**forecasting.headers(), **policy}


def describe(service) -> dict:
    return {"policy": META, "default_policy": DEFAULT_POLICY}


def example(path: str, service) -> dict:
    lead = min(7, MAX_HORIZON // 2)
    item = {"on_hand": 120, "on_order": 0, "lead_time_days": lead, "review_period_days": min(7, MAX_HORIZON - lead)}
    return {"items": [{"sku": service.forecaster.skus[0], **item, "service_level": 0.95}]}
