"""ASGI middleware: `Guard` (token, limits, lineage headers, the JSON body parsed once) on every route but
the probes, and BentoML's request timeout with its timer cancelled."""

from __future__ import annotations

import asyncio
import hmac

from bentoml._internal.server.http import traffic
from pydantic_core import from_json
from starlette.responses import JSONResponse

from serving.bento import OPEN_PATHS, SERVING, TOKEN


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
        await JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"}, status_code=504)(
            scope, receive, send
        )


def install_timeout() -> None:
    """BentoML has no public hook for its timeout middleware: it imports `traffic.TimeoutMiddleware` when it
    builds the app, so the replacement goes there (tests/test_serving_ops.py fails loudly if that moves)."""
    if getattr(traffic, "TimeoutMiddleware", None) is not _Timeout:
        traffic.TimeoutMiddleware = _Timeout


def error_response(status: int, error: str, detail: list[dict], headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


class Guard:
    """ASGI middleware for what holds on every route but the probes: the token, the limits and the lineage
    headers. Limits are answered before anything parses the body. `headers`: the lineage headers per JSON
    route (`default_headers` on the others); `counted`: per route, the list field, its limit and the limit's
    config name."""

    def __init__(
        self, app, headers: dict[str, dict[str, str]], default_headers: dict[str, str], counted: dict[str, tuple[str, int, str]]
    ) -> None:
        self.app, self.headers, self.default_headers, self.counted = app, headers, default_headers, counted

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if TOKEN and not _authorized(scope):
            detail = [
                {
                    "type": "unauthorized",
                    "loc": ["header", "Authorization"],
                    "msg": "send Authorization: Bearer <token>, the token this server was started with",
                }
            ]
            return await error_response(401, "missing or wrong API token", detail, {"WWW-Authenticate": "Bearer"})(
                scope, receive, send
            )
        send = _with_lineage(send, self.headers.get(scope["path"], self.default_headers))
        body = await _body(receive, SERVING.max_body_bytes)
        if body is None:
            detail = [
                {
                    "type": "too_large",
                    "loc": ["body"],
                    "msg": f"the body exceeds serving.max_body_bytes = {SERVING.max_body_bytes} bytes",
                }
            ]
            return await error_response(413, "request body too large", detail)(scope, receive, send)
        if scope["path"] in self.headers:
            media = dict(scope["headers"]).get(b"content-type", b"application/json").split(b";")[0].strip().lower()
            if media != b"application/json":  # BentoML would try its form and multipart parsers
                detail = [
                    {
                        "type": "media_type",
                        "loc": ["header", "Content-Type"],
                        "msg": f"send Content-Type: application/json, not {media.decode('latin-1')!r}",
                    }
                ]
                return await error_response(415, "the body must be JSON", detail)(scope, receive, send)
            try:  # pydantic's parser, as the API's: nesting past its depth limit is an error, not a RecursionError
                value = from_json(body)
            except ValueError as e:
                detail = [{"type": "json_invalid", "loc": ["body"], "msg": f"the body is not valid JSON: {e}"}]
                return await error_response(400, "the body is not valid JSON", detail)(scope, receive, send)
            field, limit, name = self.counted.get(scope["path"], (None, 0, None))
            n = len(value[field]) if field and isinstance(value, dict) and isinstance(value.get(field), list) else 0
            if field and n > limit:
                detail = [{"type": "too_many", "loc": [field], "msg": f"{n} {field} exceed {name} = {limit}; split the request"}]
                return await error_response(422, f"too many {field}", detail)(scope, receive, send)
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
