"""A direct ASGI path for the hot routes: ``POST /v1/decide``, ``POST /v1/rewards`` and
Personalizer's rank and multi-slot rank of every generation.

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

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from bandit.core.errors import ServiceError
from bandit.server.http import CLOSE, receive_body, status_of

BodyHandler = Callable[[bytes], tuple[int, Any]]  # body → (status, JSON payload)
# how a handler is run: now (bandit.server.batching.run_inline) or in a batch
Runner = Callable[[BodyHandler, bytes], Awaitable[tuple[int, Any]]]

_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True)
class HotRoute:
    """A hot route's handler; ``check`` looks at the request before its body is read
    (e.g. a required query parameter, as the routed path checks it first) and raises a
    ServiceError to refuse it;
    ``error_header`` names a response header that carries an error's code (the
    Personalizer routes' ``x-ms-error-code``)."""

    handler: BodyHandler
    check: Callable[[Scope], None] | None = None
    error_header: bytes | None = None


class FastRoutes:
    def __init__(self, app: ASGIApp, *, routes: dict[str, HotRoute], limit: int,
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
            route = self.routes.get(scope["path"])
            if route is not None:
                await self._serve(route, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, route: HotRoute, scope: Scope, receive: Receive,
                     send: Send) -> None:
        headers = [_JSON]
        try:
            if route.check is not None:
                route.check(scope)
            body = await receive_body(scope, receive, self.limit)
            if body is None:
                return  # the client went away
            status, payload = await self._result(route.handler, body)
        except ServiceError as exc:
            self.on_error(exc)
            status, payload = status_of(exc), exc.to_json()
            if route.error_header is not None:
                headers.append((route.error_header, exc.code.encode()))
            if exc.close_connection:
                headers.append(CLOSE)
        except Exception as exc:  # a bug: say so without leaking internals, keep serving
            self.on_crash(scope["path"], exc)
            status, payload = 500, {"error": {"code": "InternalError",
                                              "message": "internal error"}}
        data = orjson.dumps(payload)
        headers.append((b"content-length", b"%d" % len(data)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def _result(self, handler: BodyHandler, body: bytes) -> tuple[int, Any]:
        """The handler's result; also when a cancellation (the guard's deadline) reached
        this task after the handler had run in a batch: that decision is made and
        logged, so it is answered rather than cut off."""
        pending = self.run(handler, body)
        try:
            return await pending
        except asyncio.CancelledError:
            if not isinstance(pending, asyncio.Future) or not pending.done() or \
                    pending.cancelled():
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            result: tuple[int, Any] = pending.result()
            return result
