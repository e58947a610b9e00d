"""Small HTTP helpers: orjson responses, bounded body reading, error replies."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from bandit.errors import BadRequest


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: BadRequest) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 :class:`BadRequest` once it exceeds ``limit`` bytes
    (:func:`receive_body` behind a Starlette request)."""
    body = await receive_body(request.scope, request.receive, limit)
    if body is None:
        raise ClientDisconnect()
    return body


async def receive_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body (None if the client disconnected), or a 413
    :class:`BadRequest` once it exceeds ``limit`` bytes (checked against
    Content-Length first, then against what arrives)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                size = int(value)
            except ValueError:
                raise BadRequest("Content-Length is not an integer",
                                 field="Content-Length") from None
            if size > limit:
                raise BadRequest(f"request body larger than {limit} bytes",
                                 code="PayloadTooLarge", status=413)
            break
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise BadRequest(f"request body larger than {limit} bytes", code="PayloadTooLarge",
                             status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
