"""A direct ASGI path for the two hot routes, ``POST /v1/decide`` and
``POST /v1/rewards``.

They are served by the same body → payload functions as their Starlette routes, but
without the router, the per-request ``Request``/``Response`` objects and the
exception middleware: on one worker that is a large share of a decision's cost. The
handler is run by ``run``: in a batch with the other requests of this event-loop
iteration (:class:`~bandit.server.batching.BatchRunner`, the default), or at once. It
sits inside :class:`~bandit.server.guard.Guard` (keys, rate limits and body
deadlines apply as to every route) but outside Starlette's server-error middleware,
which would wrap every ``send``: a bug in a handler is answered here, with the same
JSON 500 and count. Any other method or path goes on to Starlette, whose router
answers 404/405 as usual.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from bandit.core.errors import ServiceError
from bandit.server.http import CLOSE, receive_body, status_of

BodyHandler = Callable[[bytes], tuple[int, Any]]  # body → (status, JSON payload)
# how a handler is run: now (bandit.server.batching.run_inline) or in a batch
Runner = Callable[[BodyHandler, bytes], Awaitable[tuple[int, Any]]]

_JSON = (b"content-type", b"application/json")


class FastRoutes:
    def __init__(self, app: ASGIApp, *, routes: dict[str, BodyHandler], limit: int,
                 on_error: Callable[[ServiceError], None],
                 on_crash: Callable[[str, Exception], None], run: Runner) -> None:
        self.app = app
        self.routes = routes
        self.run = run
        self.limit = limit
        self.on_error = on_error
        self.on_crash = on_crash

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.routes.get(scope["path"])
            if handler is not None:
                await self._serve(handler, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, handler: BodyHandler, scope: Scope, receive: Receive,
                     send: Send) -> None:
        try:
            body = await receive_body(scope, receive, self.limit)
            if body is None:
                return  # the client went away
            status, payload = await self.run(handler, body)
        except ServiceError as exc:
            self.on_error(exc)
            status, payload = status_of(exc), exc.to_json()
            if exc.close_connection:
                data = orjson.dumps(payload)
                await send({"type": "http.response.start", "status": status,
                            "headers": [_JSON, (b"content-length", b"%d" % len(data)), CLOSE]})
                await send({"type": "http.response.body", "body": data})
                return
        except Exception as exc:  # a bug: say so without leaking internals, keep serving
            self.on_crash(scope["path"], exc)
            status, payload = 500, {"error": {"code": "InternalError",
                                              "message": "internal error"}}
        data = orjson.dumps(payload)
        await send({"type": "http.response.start", "status": status,
                    "headers": [_JSON, (b"content-length", b"%d" % len(data))]})
        await send({"type": "http.response.body", "body": data})
