"""The bodies every part of the service shares: the field types, the strict request base, the error bodies
and a packaged model's metadata. Each family's own bodies live in its part (serving/<package>.py), beside
the endpoints that take them; pydantic checks every field, so a bad one is a 400 naming it."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Sku = Annotated[str, Field(min_length=1)]
Level = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
Units = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Request(BaseModel):
    # Strict: a body the schema calls invalid ("7" for an integer) is refused, not coerced. A field it does
    # not name is refused too: a misspelt "promotions" would otherwise give a forecast without them.
    model_config = ConfigDict(strict=True, extra="forbid")


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
