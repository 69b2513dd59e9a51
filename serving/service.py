"""The Bento service: /forecast, /replenish and /metadata over the champion forecaster.

A thin wrapper: requests are validated by pydantic (a bad field is a 400 naming it), and every answer
is computed by `supplyml.planning`.
"""
from __future__ import annotations

import os
from typing import Annotated

import bentoml
from bentoml.exceptions import InvalidArgument, NotFound
from fastapi import FastAPI
from pydantic import BaseModel, Field

from supplyml import planning

# Packaging pins the exact model version; the default serves whatever was imported last.
MODEL_TAG = os.environ.get("SUPPLYML_MODEL", "supplyml-forecaster:latest")
Quantile = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
Units = Annotated[float, Field(ge=0, allow_inf_nan=False)]

info = FastAPI()  # plain GET routes; BentoML's own APIs are POST


class Item(BaseModel):
    sku: str = Field(min_length=1)
    on_hand: Units
    on_order: Units = 0.0
    lead_time_days: int = Field(ge=0)
    review_period_days: int = Field(ge=1)
    service_level: Quantile


@bentoml.service(traffic={"timeout": 120})
@bentoml.asgi_app(info, path="/")
class SupplyForecast:
    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.forecaster = bentoml.mlflow.load_model(self.bento_model).unwrap_python_model().forecaster
        self.meta = self.bento_model.info.metadata
        self.max_horizon = int(self.meta["max_horizon"])
        self.n_samples = int(self.meta["num_samples"])

    def _check(self, skus: list[str], days: int, field: str) -> None:
        if days > self.max_horizon:
            raise InvalidArgument(f"{field}: {days} days is beyond this model's maximum of {self.max_horizon}")
        missing = [s for s in skus if s not in self.forecaster.row]
        if missing:
            raise NotFound(f"skus: unknown SKU(s) {', '.join(missing[:10])}; GET /metadata lists what this model knows")

    @bentoml.api
    def forecast(self, skus: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)],
                 horizon: Annotated[int, Field(ge=1)],
                 quantiles: Annotated[list[Quantile], Field(min_length=1)] = [0.05, 0.5, 0.95]) -> dict:
        self._check(skus, horizon, "horizon")
        return {"forecasts": planning.forecast(self.forecaster, skus, horizon, sorted(set(quantiles)), self.n_samples)}

    @bentoml.api
    def replenish(self, items: Annotated[list[Item], Field(min_length=1)]) -> dict:
        self._check([i.sku for i in items], max(i.lead_time_days + i.review_period_days for i in items),
                    "lead_time_days + review_period_days")
        return {"decisions": planning.replenish(self.forecaster, items, self.n_samples)}

    @info.get("/metadata")
    def metadata(self) -> dict:
        return {**self.meta, "bento_model": str(self.bento_model.tag), "skus": self.forecaster.skus,
                "history_end": self.forecaster.last_date.date().isoformat()}
