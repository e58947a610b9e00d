"""Small HTTP helpers: orjson responses, bounded body reading, error replies."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from bandit.errors import BadRequest


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: BadRequest) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 :class:`BadRequest` once it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest("Content-Length is not an integer", field="Content-Length") from None
        if size > limit:
            raise BadRequest(f"request body larger than {limit} bytes", code="PayloadTooLarge",
                             status=413)
    chunks = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BadRequest(f"request body larger than {limit} bytes", code="PayloadTooLarge",
                             status=413)
        chunks.append(chunk)
    return b"".join(chunks)
