"""The forecaster's part of the service: POST /forecast, its bodies and what /metadata says of the model.
Every Bento has a forecaster (`families.FORECASTER`): /replenish decides on its paths, and its SKUs are the
ones the service knows. A part's contract is in serving/service.py's docstring."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import bentoml
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from serving.adapters import answers, batch_of_one
from serving.bento import BATCHING, MAX_HORIZON, METAS, MODELS, SERVING, lineage, packaged
from serving.schemas import Level, Request, Sku
from supplyml import families, planning
from supplyml.columns import FLAGS

FAMILY = families.FORECASTER
META = METAS[FAMILY]
# Flags the model learnt from (all, for a Bento packaged before this was recorded).
TRAINED_FLAGS = set(META.get("trained_flags", ",".join(FLAGS)).split(",")) - {""}
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


class ForecastRequest(Request):
    """`promo` and `event` may hold a whole calendar: SKUs not in `skus` and days past `horizon` are not used."""

    skus: list[Sku] = Field(min_length=1, max_length=SERVING.max_skus)
    horizon: int = Field(ge=1, le=MAX_HORIZON)
    quantiles: list[Level] = Field(planning.QUANTILES, min_length=1)
    promo: dict[str, Promo] = Field({}, description="known promotions per SKU: " + FLAGS_DOC.format("1: on promotion"))
    event: dict[str, Event] = Field({}, description="known events per SKU: " + FLAGS_DOC.format("1: a holiday or event"))


class SkuForecast(BaseModel):
    sku: str
    dates: list[date]
    mean: list[float]
    quantiles: dict[str, list[float]] = Field(description='per requested level, keyed as written ("0.1", "0.5")')


PATHS = ("/forecast",)
COUNTED = {"/forecast": ("skus", SERVING.max_skus, "serving.max_skus")}
OPERATIONS = {("/forecast", "post"): ("400", "401", "404", "413", "415", "422", "500", "503", "504")}
BODIES: dict = {}  # BentoML documents these bodies as pydantic does
HEADERS: dict = {}  # the 200 answer's headers beyond the lineage (contract.LINEAGE_DOC), per path
METADATA = {"bento_model": (str, ...), "skus": (list[str], ...), "history_end": (date, ...)}
ABOUT = f"demand forecasts from {META['model_name']} version {META['model_version']}"


class Endpoints:
    @bentoml.api(input_spec=batch_of_one(ForecastRequest), output_spec=answers("forecasts", SkuForecast), **BATCHING)
    def forecast(self, requests: list[ForecastRequest]) -> list:
        """Mean and quantiles per SKU and day, from the day after the model's history ends."""
        return self.answer(
            requests,
            [[(["skus", i], s) for i, s in enumerate(r.skus)] for r in requests],
            lambda ok: planning.forecast_many(self.forecaster, [r.model_dump() for r in ok]),
        )


def load(service) -> None:
    service.forecaster = packaged(service, FAMILY).forecaster
    service.known = set(service.forecaster.skus)
    planning.forecast(service.forecaster, service.forecaster.skus[:1], MAX_HORIZON, [0.5])


def headers() -> dict[str, str]:
    return lineage(META)


def describe(service) -> dict:
    return {
        **META,
        "bento_model": str(MODELS[FAMILY].tag),
        "skus": service.forecaster.skus,
        "history_end": service.forecaster.last_date.date().isoformat(),
    }


def example(path: str, service) -> dict:
    skus = service.forecaster.skus[:2]
    promo = {"promo": {skus[0]: [0, 0, 1, 1][:MAX_HORIZON]}} if "promo" in TRAINED_FLAGS else {}
    return {"skus": skus, "horizon": min(14, MAX_HORIZON), "quantiles": [0.1, 0.5, 0.9], **promo}
