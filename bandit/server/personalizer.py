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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bandit.schema import check_id
from bandit.server.http import JSONResponse, read_body

if TYPE_CHECKING:
    from bandit.server.service import Service

BASES = ("/personalizer/v1.0", "/personalizer/v1.1-preview.3")

Handler = Callable[[Request], Awaitable[Response]]


def routes(svc: Service, guarded: Callable[[Service, Handler], Handler]) -> list[Route]:
    limit = svc.settings.max_body_bytes

    def event_id(request: Request) -> str:
        value = check_id(request.path_params["eventId"], "eventId", svc.settings.max_id_bytes)
        assert value is not None
        return value

    async def rank(request: Request) -> Response:
        req = svc.parser.personalizer_rank(await read_body(request, limit))
        req, decision = svc.decide(req)
        ranking = [{"id": req.offers[i].id, "probability": p}
                   for i, p in zip(decision.order, decision.probabilities, strict=True)]
        return JSONResponse({"ranking": ranking, "eventId": req.event_id,
                             "rewardActionId": ranking[0]["id"]}, status_code=201)

    async def reward(request: Request) -> Response:
        body = await read_body(request, limit)
        svc.reward(svc.parser.personalizer_reward(event_id(request), body))
        return Response(status_code=204)

    async def activate(request: Request) -> Response:
        await read_body(request, limit)
        svc.activate(event_id(request))
        return Response(status_code=204)

    async def multislot_rank(request: Request) -> Response:
        req = svc.parser.personalizer_multislot_rank(await read_body(request, limit))
        req, decision = svc.decide(req)
        slots = []
        for k, sid in enumerate(req.slot_ids):
            action = req.offers[decision.order[k]].id if k < decision.slots else None
            slots.append({"id": sid, "rewardActionId": action})
        return JSONResponse({"slots": slots, "eventId": req.event_id}, status_code=201)

    async def multislot_reward(request: Request) -> Response:
        body = await read_body(request, limit)
        for r in svc.parser.personalizer_multislot_reward(event_id(request), body):
            svc.reward(r)
        return Response(status_code=204)

    out = []
    for base in BASES:
        out += [
            Route(f"{base}/rank", guarded(svc, rank), methods=["POST"]),
            Route(f"{base}/events/{{eventId}}/reward", guarded(svc, reward), methods=["POST"]),
            Route(f"{base}/events/{{eventId}}/activate", guarded(svc, activate),
                  methods=["POST"]),
            Route(f"{base}/multislot/rank", guarded(svc, multislot_rank), methods=["POST"]),
            Route(f"{base}/multislot/events/{{eventId}}/reward", guarded(svc, multislot_reward),
                  methods=["POST"]),
            Route(f"{base}/multislot/events/{{eventId}}/activate", guarded(svc, activate),
                  methods=["POST"]),
        ]
    return out
