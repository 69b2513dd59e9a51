"""The Bento service: POST /forecast, POST /replenish and GET /metadata over one packaged forecaster.

A thin wrapper: pydantic checks every field (a bad one is a 400 naming it), an unknown SKU is a 404,
and every answer is computed by `supplyml.planning`.
"""
from __future__ import annotations

import os
from typing import Annotated

import bentoml
from fastapi import FastAPI
from pydantic import BaseModel, Field, model_validator

from supplyml import planning
from supplyml.forecasting import UnknownSeriesError


class Args(BaseModel):
    # serving/package.py pins the exact tag as a Bento argument, so a Bento keeps serving the model it
    # was built with even after newer imports; the fallbacks serve ad-hoc `bentoml serve serving.service:...`.
    model_tag: str = os.environ.get("SUPPLYML_BENTO_MODEL", "supplyml-forecaster:latest")


MODEL = bentoml.models.BentoModel(bentoml.use_arguments(Args).model_tag)
# Limits come from the model's metadata (written at packaging from the config), so request schemas and
# the OpenAPI page state them, and a violation is an ordinary field error.
MAX_HORIZON = int(bentoml.models.get(MODEL.tag).info.metadata["max_horizon"])

Sku = Annotated[str, Field(min_length=1)]
Level = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
Units = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Item(BaseModel):
    sku: Sku
    on_hand: Units
    on_order: Units = 0.0
    lead_time_days: int = Field(ge=0, le=MAX_HORIZON - 1)
    review_period_days: int = Field(ge=1, le=MAX_HORIZON)
    service_level: Level

    @model_validator(mode="after")
    def _within_horizon(self) -> Item:
        days = self.lead_time_days + self.review_period_days
        if days > MAX_HORIZON:
            raise ValueError(f"lead_time_days + review_period_days = {days} exceeds this model's maximum horizon "
                             f"of {MAX_HORIZON} days")
        return self


info = FastAPI()  # BentoML 1.4 APIs are POST only; plain GET routes come from a mounted FastAPI app


@bentoml.service(traffic={"timeout": 120})
@bentoml.asgi_app(info, path="/")
class SupplyForecast:
    model = MODEL

    def __init__(self) -> None:
        self.forecaster = bentoml.mlflow.load_model(self.model).unwrap_python_model().forecaster
        self.meta = dict(self.model.info.metadata)

    @bentoml.api
    def forecast(self, skus: Annotated[list[Sku], Field(min_length=1)],
                 horizon: Annotated[int, Field(ge=1, le=MAX_HORIZON)], ctx: bentoml.Context,
                 quantiles: Annotated[list[Level], Field(min_length=1)] = [0.05, 0.5, 0.95]) -> dict:
        try:
            return {"forecasts": planning.forecast(self.forecaster, skus, horizon, quantiles)}
        except UnknownSeriesError as e:
            return _unknown_skus(ctx, e, [(["skus", i], sku) for i, sku in enumerate(skus)])

    @bentoml.api
    def replenish(self, items: Annotated[list[Item], Field(min_length=1)], ctx: bentoml.Context) -> dict:
        try:
            return {"decisions": planning.replenish(self.forecaster, items, self.meta["replenish_samples"],
                                                    self.meta["seed"])}
        except UnknownSeriesError as e:
            return _unknown_skus(ctx, e, [(["items", i, "sku"], item.sku) for i, item in enumerate(items)])

    @info.get("/metadata")
    def metadata(self) -> dict:
        bento = bentoml.server_context
        return {**self.meta, "bento": f"{bento.bento_name}:{bento.bento_version}" if bento.bento_name else None,
                "bento_model": str(self.model.tag), "skus": self.forecaster.skus,
                "history_end": self.forecaster.last_date.date().isoformat()}


def _unknown_skus(ctx: bentoml.Context, error: UnknownSeriesError, requested: list[tuple[list, str]]) -> dict:
    # A 404 in the shape of BentoML's 400 for field errors, so clients read one error format. (Raising
    # bentoml.exceptions.NotFound gives a 404 too, but its body is a one-element list.)
    ctx.response.status_code = 404
    missing = set(error.missing)
    detail = [{"type": "unknown_sku", "loc": loc,
               "msg": f"unknown SKU {sku!r}; GET /metadata lists the SKUs this model knows"}
              for loc, sku in requested if sku in missing]
    return {"error": f"{len(detail)} unknown SKU(s)", "detail": detail}
