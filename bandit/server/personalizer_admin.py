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
:class:`~bandit.config.loop_admin.LoopAdmin`; after a change this worker applies it at once, the
others at their next poll of the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bandit.config.loop_admin import LoopAdmin, default_exploration
from bandit.core.errors import BadRequest
from bandit.core.schema import load_json
from bandit.server.http import JSONResponse, read_body

if TYPE_CHECKING:
    from bandit.server.service import Service

Handler = Callable[[Request], Awaitable[Response]]
MODEL_BODY_LIMIT = 1 << 30  # a model file may be far larger than a rank request


class _Handlers:
    """The handlers of one API generation (``iso``: 2022-09-01-preview's shapes)."""

    def __init__(self, svc: Service, iso: bool) -> None:
        self.svc = svc
        self.iso = iso
        self.admin = LoopAdmin(svc.settings, svc.store)
        self.limit = svc.settings.max_body_bytes

    def _service_json(self) -> JSONResponse:
        svc = self.svc
        return JSONResponse(svc.loop.service_json(self.iso,
                                                  default_exploration(svc.policy.spec)))

    async def _changed(self, result: dict[str, str] | None = None,
                       status: int = 200) -> Response:
        """The reply after a change of the served policy or model: both read again."""
        self.svc.refresh_config(force=True)
        await self.svc.refresh_model()
        return JSONResponse(result, status_code=status) if result is not None \
            else Response(status_code=status)

    async def get_service(self, request: Request) -> Response:
        self.svc.refresh_config()
        return self._service_json()

    async def put_service(self, request: Request) -> Response:
        body = load_json(await read_body(request, self.limit))
        self.admin.update_service(body)
        self.svc.refresh_config(force=True)
        return self._service_json()

    async def get_policy(self, request: Request) -> Response:
        return JSONResponse(self.admin.policy_json())

    async def put_policy(self, request: Request) -> Response:
        body = load_json(await read_body(request, self.limit))
        return await self._changed(await asyncio.to_thread(self.admin.update_policy, body))

    async def reset_policy(self, request: Request) -> Response:
        await read_body(request, self.limit)
        return await self._changed(await asyncio.to_thread(self.admin.reset_policy))

    async def get_model(self, request: Request) -> Response:
        signed = _flag(request.query_params.get("signed"), "signed")
        data = await asyncio.to_thread(self.admin.export_model, signed)
        return Response(data, media_type="application/octet-stream")

    async def put_model(self, request: Request) -> Response:
        body = await read_body(request, MODEL_BODY_LIMIT)
        await asyncio.to_thread(self.admin.import_model, body)
        return await self._changed(status=204)

    async def reset_model(self, request: Request) -> Response:
        await read_body(request, self.limit)
        await asyncio.to_thread(self.admin.reset_model)
        return await self._changed(status=204)

    async def model_properties(self, request: Request) -> Response:
        return JSONResponse(self.admin.model_properties())

    async def log_properties(self, request: Request) -> Response:
        return JSONResponse(self.admin.log_properties())

    async def delete_logs(self, request: Request) -> Response:
        await read_body(request, self.limit)
        self.admin.delete_logs()
        self.svc.refresh_config(force=True)
        return Response(status_code=204)


def routes(svc: Service, base: str, *, iso: bool,
           wrap: Callable[[Handler], Handler]) -> list[Route]:
    h = _Handlers(svc, iso)
    return grouped_routes(base, wrap, [
        ("/configurations/service", "GET", h.get_service),
        ("/configurations/service", "PUT", h.put_service),
        ("/configurations/policy", "GET", h.get_policy),
        ("/configurations/policy", "PUT", h.put_policy),
        ("/configurations/policy", "DELETE", h.reset_policy),
        ("/model", "GET", h.get_model),
        ("/model", "PUT", h.put_model),
        ("/model", "DELETE", h.reset_model),
        ("/model/properties", "GET", h.model_properties),
        ("/logs/properties", "GET", h.log_properties),
        ("/logs", "DELETE", h.delete_logs),
    ])


def grouped_routes(base: str, wrap: Callable[[Handler], Handler],
                   table: list[tuple[str, str, Handler]]) -> list[Route]:
    """One route per path of ``table`` (path, method, handler), so a method it lacks
    gets 405 with every method it has in Allow."""
    by_path: dict[str, dict[str, Handler]] = {}
    for path, method, fn in table:
        by_path.setdefault(path, {})[method] = fn
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
