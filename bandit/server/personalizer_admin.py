"""Personalizer's configuration, model and logs routes (``admin`` scope).

``GET/PUT {base}/configurations/service``          → 200 ServiceConfiguration
``GET/PUT/DELETE {base}/configurations/policy``    → 200 ``{"name", "arguments"}``
``GET {base}/model[?signed=true]``                 → 200 the model file (or a zip)
``PUT {base}/model``                               → 204 (the zip of ``signed=true``, or a
                                                      bare VW model file)
``DELETE {base}/model``                            → 204 (a fresh model is served)
``GET {base}/model/properties``                    → 200 ``{"creationTime", "lastModifiedTime"}``
``GET {base}/logs/properties``                     → 200 ``{"dateRange": {"from", "to"}}``
``DELETE {base}/logs``                             → 204

Durations are TimeSpans (``00:10:00``) under ``v1.0`` and ISO-8601 (``PT10M``) under
``v1.1-preview.3`` and ``?api-version=2022-09-01-preview``, as each generation's REST
reference writes them; both are accepted everywhere. The work is in
:class:`~bandit.loop_admin.LoopAdmin`; after a change this worker applies it at once, the
others at their next poll of the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bandit.errors import BadRequest
from bandit.loop_admin import LoopAdmin, default_exploration
from bandit.schema import load_json
from bandit.server.http import JSONResponse, read_body

if TYPE_CHECKING:
    from bandit.server.service import Service

Handler = Callable[[Request], Awaitable[Response]]
MODEL_BODY_LIMIT = 1 << 30  # a model file may be far larger than a rank request


def routes(svc: Service, base: str, *, iso: bool,
           wrap: Callable[[Handler], Handler]) -> list[Route]:
    admin = LoopAdmin(svc.settings, svc.store)
    limit = svc.settings.max_body_bytes

    def service_json() -> JSONResponse:
        return JSONResponse(svc.loop.service_json(iso, default_exploration(svc.policy.spec)))

    async def get_service(request: Request) -> Response:
        svc.refresh_config()
        return service_json()

    async def put_service(request: Request) -> Response:
        body = load_json(await read_body(request, limit))
        admin.update_service(body)
        svc.refresh_config(force=True)
        return service_json()

    async def get_policy(request: Request) -> Response:
        return JSONResponse(admin.policy_json())

    async def changed(result: dict[str, str] | None = None, status: int = 200) -> Response:
        svc.refresh_config(force=True)
        await svc.refresh_model()
        return JSONResponse(result, status_code=status) if result is not None \
            else Response(status_code=status)

    async def put_policy(request: Request) -> Response:
        body = load_json(await read_body(request, limit))
        return await changed(await asyncio.to_thread(admin.update_policy, body))

    async def reset_policy(request: Request) -> Response:
        await read_body(request, limit)
        return await changed(await asyncio.to_thread(admin.reset_policy))

    async def get_model(request: Request) -> Response:
        signed = _flag(request.query_params.get("signed"), "signed")
        data = await asyncio.to_thread(admin.export_model, signed)
        return Response(data, media_type="application/octet-stream")

    async def put_model(request: Request) -> Response:
        body = await read_body(request, MODEL_BODY_LIMIT)
        await asyncio.to_thread(admin.import_model, body)
        return await changed(status=204)

    async def reset_model(request: Request) -> Response:
        await read_body(request, limit)
        await asyncio.to_thread(admin.reset_model)
        return await changed(status=204)

    async def model_properties(request: Request) -> Response:
        return JSONResponse(admin.model_properties())

    async def log_properties(request: Request) -> Response:
        return JSONResponse(admin.log_properties())

    async def delete_logs(request: Request) -> Response:
        await read_body(request, limit)
        admin.delete_logs()
        svc.refresh_config(force=True)
        return Response(status_code=204)

    table: list[tuple[str, str, Handler]] = [
        ("/configurations/service", "GET", get_service),
        ("/configurations/service", "PUT", put_service),
        ("/configurations/policy", "GET", get_policy),
        ("/configurations/policy", "PUT", put_policy),
        ("/configurations/policy", "DELETE", reset_policy),
        ("/model", "GET", get_model),
        ("/model", "PUT", put_model),
        ("/model", "DELETE", reset_model),
        ("/model/properties", "GET", model_properties),
        ("/logs/properties", "GET", log_properties),
        ("/logs", "DELETE", delete_logs),
    ]
    by_path: dict[str, dict[str, Handler]] = {}
    for path, method, fn in table:
        by_path.setdefault(path, {})[method] = fn
    # one route per path, so a method it lacks gets 405 with every method it has in Allow
    return [Route(base + path, wrap(by_method(fns)), methods=list(fns))
            for path, fns in by_path.items()]


def by_method(fns: dict[str, Handler]) -> Handler:
    async def dispatch(request: Request) -> Response:
        return await fns["GET" if request.method == "HEAD" else request.method](request)

    return dispatch


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    raise BadRequest(f"{name} must be true or false", field=name)
