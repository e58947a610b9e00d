"""Azure AI Personalizer-compatible routes (same paths, field names and status codes).

``POST {base}/rank``                         → 201 ``{"ranking", "eventId", "rewardActionId"}``
``POST {base}/events/{eventId}/reward``      → 204, body ``{"value": number}``
``POST {base}/events/{eventId}/activate``    → 204
``POST {base}/multislot/rank``               → 201 ``{"slots": [{"id", "rewardActionId"}],
                                                "eventId"}``
``POST {base}/multislot/events/{eventId}/reward`` → 204, body ``{"reward": [{"slotId",
                                                "value"}]}``
``POST {base}/multislot/events/{eventId}/activate`` → 204

Multi-slot: slot *k* of the request's ``slots`` list is position *k*; each slot's
``excludedActions`` apply to it alone; slot ``features`` and ``baselineAction`` are
accepted and not used by the model.

with ``base`` = ``/personalizer/v1.0`` and ``/personalizer/v1.1-preview.3``. Requests
use ``contextFeatures`` (list of objects), ``actions`` (``id`` + ``features`` list),
``excludedActions``, ``eventId`` and ``deferActivation``.

The newest generation has no version in its path: ``/personalizer/rank?api-version=
2022-09-01-preview`` and so on. A request there without ``api-version`` gets 400
``MissingApiVersionParameter``, one with another version 400
``UnsupportedApiVersionValue`` naming the supported ones (the Azure REST guidelines'
answers). Every error on these routes also carries its code in ``x-ms-error-code``.
The configuration, model and logs routes are in
:mod:`bandit.server.personalizer_admin`, the evaluation routes in
:mod:`bandit.server.personalizer_eval`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from bandit.config.loop_admin import LoopAdmin
from bandit.core.errors import BadRequest
from bandit.core.schema import check_id
from bandit.evaluation.evaluation_jobs import EvaluationJobs
from bandit.server import personalizer_admin, personalizer_eval
from bandit.server.fast import BodyHandler, HotRoute
from bandit.server.http import JSONResponse, read_body, routed

if TYPE_CHECKING:
    from bandit.server.service import Service

BASES = ("/personalizer/v1.0", "/personalizer/v1.1-preview.3")
QUERY_BASE = "/personalizer"  # the generations chosen by ?api-version=
API_VERSIONS = ("2022-09-01-preview",)
ERROR_HEADER = b"x-ms-error-code"  # every error's code, as Personalizer answers

Handler = Callable[[Request], Awaitable[Response]]


def routes(svc: Service, guarded: Callable[[Service, Handler], Handler]) -> list[Route]:
    limit = svc.settings.max_body_bytes

    def event_id(request: Request) -> str:
        value = check_id(request.path_params["eventId"], "eventId", svc.settings.max_id_bytes)
        assert value is not None
        return value

    rank, multislot_rank = (routed(h, limit) for h in rank_handlers(svc))

    async def reward(request: Request) -> Response:
        body = await read_body(request, limit)
        svc.reward(svc.parser.personalizer_reward(event_id(request), body))
        return Response(status_code=204)

    async def activate(request: Request) -> Response:
        await read_body(request, limit)
        svc.activate(event_id(request))
        return Response(status_code=204)

    async def multislot_reward(request: Request) -> Response:
        body = await read_body(request, limit)
        for r in svc.parser.personalizer_multislot_reward(event_id(request), body):
            svc.reward(r)
        return Response(status_code=204)

    handlers = {"rank": rank, "reward": reward, "activate": activate,
                "multislot_rank": multislot_rank, "multislot_reward": multislot_reward}
    jobs = EvaluationJobs(svc.settings, svc.store, LoopAdmin(svc.settings, svc.store))
    out = [personalizer_eval.report_route(svc, jobs, lambda h: guarded(svc, h))]
    for base in (*BASES, QUERY_BASE):
        wrap = versioned if base == QUERY_BASE else _identity

        def full(h: Handler, w: Callable[[Handler], Handler] = wrap) -> Handler:
            return personalized(svc, w(h), guarded)

        out += _event_routes(base, {k: full(h) for k, h in handlers.items()})
        # durations: TimeSpans in v1.0's reference, ISO-8601 in v1.1-preview.3's and 2022's
        out += personalizer_admin.routes(svc, base, iso=base != BASES[0], wrap=full)
        out += personalizer_eval.routes(svc, jobs, base, iso=base == QUERY_BASE, wrap=full)
    return out


def rank_handlers(svc: Service) -> tuple[BodyHandler, BodyHandler]:
    """Rank and multi-slot rank: body → (201, reply)."""

    def rank(body: bytes) -> tuple[int, Any]:
        req, decision = svc.decide(svc.parser.personalizer_rank(body))
        offers = req.offers
        ranking = [{"id": offers[i].id, "probability": p}
                   for i, p in zip(decision.order, decision.probabilities, strict=True)]
        return 201, {"ranking": ranking, "eventId": req.event_id,
                     "rewardActionId": ranking[0]["id"]}

    def multislot_rank(body: bytes) -> tuple[int, Any]:
        req, decision = svc.decide(svc.parser.personalizer_multislot_rank(body))
        slots = []
        for k, sid in enumerate(req.slot_ids):
            action = req.offers[decision.order[k]].id if k < decision.slots else None
            slots.append({"id": sid, "rewardActionId": action})
        return 201, {"slots": slots, "eventId": req.event_id}

    return rank, multislot_rank


def hot_routes(svc: Service) -> dict[str, HotRoute]:
    """Rank and multi-slot rank of every generation, for
    :class:`~bandit.server.fast.FastRoutes`: the same handlers as their routes below,
    the query generation's ``api-version`` checked, errors' codes in ``x-ms-error-code``."""
    rank, multislot_rank = rank_handlers(svc)
    out: dict[str, HotRoute] = {}
    for base in (*BASES, QUERY_BASE):
        check = _check_scope_version if base == QUERY_BASE else None
        out[f"{base}/rank"] = HotRoute(rank, check, ERROR_HEADER)
        out[f"{base}/multislot/rank"] = HotRoute(multislot_rank, check, ERROR_HEADER)
    return out


def _event_routes(base: str, h: dict[str, Handler]) -> list[Route]:
    return [
        Route(f"{base}/rank", h["rank"], methods=["POST"]),
        Route(f"{base}/events/{{eventId}}/reward", h["reward"], methods=["POST"]),
        Route(f"{base}/events/{{eventId}}/activate", h["activate"], methods=["POST"]),
        Route(f"{base}/multislot/rank", h["multislot_rank"], methods=["POST"]),
        Route(f"{base}/multislot/events/{{eventId}}/reward", h["multislot_reward"],
              methods=["POST"]),
        Route(f"{base}/multislot/events/{{eventId}}/activate", h["activate"],
              methods=["POST"]),
    ]


def _identity(fn: Handler) -> Handler:
    return fn


def versioned(fn: Handler) -> Handler:
    """Refuse a request whose ``api-version`` is missing or not one this server speaks."""

    async def wrapper(request: Request) -> Response:
        check_api_version(request.query_params.get("api-version"))
        return await fn(request)

    return wrapper


def check_api_version(version: str | None) -> None:
    """Refuse a missing ``api-version``, or one this server does not speak."""
    if not version:
        raise BadRequest("The api-version query parameter (?api-version=) is required for "
                         "all requests", field="api-version",
                         code="MissingApiVersionParameter")
    if version not in API_VERSIONS:
        raise BadRequest(f"Unsupported api-version '{version}'. The supported "
                         f"api-versions are '{', '.join(API_VERSIONS)}'.",
                         field="api-version", code="UnsupportedApiVersionValue")


def _check_scope_version(scope: Scope) -> None:
    check_api_version(QueryParams(scope["query_string"]).get("api-version"))


def personalized(svc: Service, fn: Handler, guarded: Callable[[Service, Handler], Handler]
                 ) -> Handler:
    """``guarded`` with Personalizer's ``x-ms-error-code`` header on errors."""
    inner = guarded(svc, fn)

    async def wrapper(request: Request) -> Response:
        response = await inner(request)
        if response.status_code >= 400 and isinstance(response, JSONResponse):
            code = _error_code(bytes(response.body))
            if code:
                response.headers[ERROR_HEADER.decode()] = code
        return response

    return wrapper


def _error_code(body: bytes) -> str:
    try:
        err = orjson.loads(body).get("error", {})
        return str(err.get("code", "")) if isinstance(err, dict) else ""
    except (orjson.JSONDecodeError, AttributeError):
        return ""

