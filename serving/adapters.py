"""BentoML input and output specs for the service's bodies: a request body in, its list for adaptive
batching; an answer or the error response already made out. The one private BentoML import lives here."""

from __future__ import annotations

import bentoml
from _bentoml_sdk.io_models import IORootModel
from pydantic import (
    BaseModel,
    create_model,
)
from starlette.responses import JSONResponse, Response


def batch_of_one(request: type[BaseModel]) -> type[IORootModel]:
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


def answers(key: str, model: type[BaseModel]) -> type[bentoml.IODescriptor]:
    """The output spec for `{key: [model]}`; the API returns each request's answer list, or its error response."""

    class Output(bentoml.IODescriptor):
        @classmethod
        async def to_http_response(cls, obj: list, serde) -> Response:
            (answer,) = obj  # the slice of the batch that is this request's
            return answer if isinstance(answer, Response) else JSONResponse({key: answer})

    return create_model(f"{key.title()}Answer", __base__=Output, **{key: (list[model], ...)})


def single(model: type[BaseModel]) -> type[bentoml.IODescriptor]:
    """The output spec for one `model` answer, or its error response."""

    class Output(bentoml.IODescriptor):
        @classmethod
        async def to_http_response(cls, obj: list, serde) -> Response:
            (answer,) = obj
            return answer if isinstance(answer, Response) else JSONResponse(answer)

    return create_model(f"{model.__name__}Answer", __base__=(Output, model))
