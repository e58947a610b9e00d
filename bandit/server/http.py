"""Small HTTP helpers: orjson responses, bounded body reading, error replies.

A body refused before it has all arrived (413: too large; 408: too slow, see
:mod:`bandit.server.guard`) is first *drained*: read and dropped, at most
``DRAIN_BYTES`` of it and for at most ``DRAIN_SECONDS``, and only then answered, with
``Connection: close``. Clients that send the whole body before they read the answer
(Python's urllib and requests, most others) otherwise find the connection closed
under them (a broken pipe or a reset) instead of reading the 413; the caps keep a
client from holding a worker with a huge or endless body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from bandit.core.errors import (
    BadRequest,
    Conflict,
    NotFound,
    ServiceError,
    TooLarge,
    Unavailable,
    Unprocessable,
)

DRAIN_BYTES = 8 << 20  # of a refused body, read and dropped before the answer
DRAIN_SECONDS = 1.0  # at most, so a slow sender is still cut off
CLOSE = (b"connection", b"close")


class PayloadTooLarge(TooLarge):
    close_connection = True

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")


async def drain(receive: Receive, max_bytes: int = DRAIN_BYTES,
                seconds: float = DRAIN_SECONDS) -> bool:
    """Read and drop the rest of a request body, at most ``max_bytes`` and for at most
    ``seconds``; True if it was read to its end (or the client went away), so closing
    the connection then loses the client nothing it still had to send."""
    total = 0
    deadline = time.monotonic() + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            message = await asyncio.wait_for(receive(), left)
            if message["type"] == "http.disconnect":
                return True
            total += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
            if total > max_bytes:
                return False
    except TimeoutError:
        return False


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# the HTTP status of each kind of service error (the core never names one)
STATUS: dict[type[ServiceError], int] = {BadRequest: 400, NotFound: 404, Conflict: 409,
                                         TooLarge: 413, Unprocessable: 422, Unavailable: 503}


def status_of(exc: ServiceError) -> int:
    for kind in type(exc).__mro__:
        status = STATUS.get(kind)
        if status is not None:
            return status
    return 400


def error_response(exc: ServiceError) -> JSONResponse:
    headers = {"connection": "close"} if exc.close_connection else None
    return JSONResponse(exc.to_json(), status_code=status_of(exc), headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 :class:`BadRequest` once it exceeds ``limit`` bytes
    (:func:`receive_body` behind a Starlette request)."""
    body = await receive_body(request.scope, request.receive, limit)
    if body is None:
        raise ClientDisconnect()
    return body


def routed(handler: Callable[[bytes], tuple[int, Any]], limit: int
           ) -> Callable[[Request], Awaitable[Response]]:
    """A body → (status, payload) handler as a Starlette route (the router's twin of
    the hot routes that :class:`~bandit.server.fast.FastRoutes` normally answers)."""

    async def route(request: Request) -> Response:
        status, payload = handler(await read_body(request, limit))
        return JSONResponse(payload, status_code=status)

    return route


async def receive_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body (None if the client disconnected), or a 413
    :class:`PayloadTooLarge` once it exceeds ``limit`` bytes (checked against
    Content-Length first, then against what arrives), raised once the rest of the
    body has been drained (:func:`drain`; not when Content-Length says the body is
    larger than the drain would read anyway)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                size = int(value)
            except ValueError:
                raise BadRequest("Content-Length is not an integer",
                                 field="Content-Length") from None
            if size > limit:
                if size <= DRAIN_BYTES:
                    await drain(receive)
                raise PayloadTooLarge(limit)
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
            if message.get("more_body", False):
                await drain(receive)
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
