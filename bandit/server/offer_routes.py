"""The offer catalogue's routes: ``PUT``/``GET``/``DELETE /v1/offers/{offer_id}`` and
``GET /v1/offers`` over :mod:`bandit.value.catalogue` (validation and storage live
there; a bad body is a 400 naming the field)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bandit.core.errors import BadRequest, Unavailable
from bandit.server.http import JSONResponse, read_body
from bandit.value.catalogue import STORE_ERRORS, check_offer_id, parse_entry

if TYPE_CHECKING:
    from bandit.server.service import Service
    from bandit.value.catalogue_view import CatalogueView

Handler = Callable[[Request], Awaitable[Response]]


def routes(svc: Service, guarded: Callable[[Service, Handler], Handler]) -> list[Route]:
    """The catalogue's routes for service ``svc`` (its ``offers``, a
    :class:`~bandit.value.catalogue_view.CatalogueView`)."""
    limit = svc.settings.max_body_bytes
    view = svc.value_aware.offers
    if view is None:  # (a service built without a catalogue)
        return []

    def offer_id(request: Request) -> str:
        return check_offer_id(request.path_params["offer_id"])

    async def put(request: Request) -> Response:
        oid = offer_id(request)
        body = await read_body(request, limit)
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest("body must be a JSON object") from None
        entry = parse_entry(oid, obj, time.time(), view.limits)
        with stored(view, "written"):
            new = view.catalogue.put(entry)
        view.refresh(force=True)
        return JSONResponse(entry.as_json(), status_code=201 if new else 200)

    async def get(request: Request) -> Response:
        with stored(view, "read"):
            return JSONResponse(view.catalogue.get(offer_id(request)).as_json())

    async def delete(request: Request) -> Response:
        oid = offer_id(request)
        await read_body(request, limit)
        with stored(view, "written"):
            view.catalogue.delete(oid)
        view.refresh(force=True)
        return JSONResponse({"id": oid, "deleted": True})

    async def listing(request: Request) -> Response:
        with stored(view, "read"):
            return JSONResponse({"revision": view.catalogue.revision,
                                 "offers": [e.as_json() for e in view.catalogue.entries()]})

    return [
        Route("/v1/offers", guarded(svc, listing), methods=["GET"]),
        by_method("/v1/offers/{offer_id}",
                  {"GET": guarded(svc, get), "PUT": guarded(svc, put),
                   "DELETE": guarded(svc, delete)}),
    ]


@contextlib.contextmanager
def stored(view: CatalogueView, what: str) -> Iterator[None]:
    """The catalogue's store failing (its file read-only, locked, full, damaged; Redis
    away): a 503 saying so, not a 500. A Redis that failed is not asked again until
    the view's retry time (each try may wait its timeout, holding the worker's loop):
    503 at once until then."""
    wait = view.retry_in()
    if wait > 0:
        raise Unavailable(f"the offer catalogue cannot be {what} now: {view.name} did not "
                          f"answer; tried again in {wait:.1f} s", code="CatalogueUnavailable")
    try:
        yield
    except STORE_ERRORS as exc:
        view.failed(exc)
        raise Unavailable(f"the offer catalogue cannot be {what} now: {exc}",
                          code="CatalogueUnavailable") from None


def by_method(path: str, handlers: dict[str, Handler]) -> Route:
    """One route for several methods (so a 405's ``Allow`` lists them all)."""

    async def route(request: Request) -> Response:
        return await handlers[request.method if request.method != "HEAD" else "GET"](request)

    return Route(path, route, methods=list(handlers))
