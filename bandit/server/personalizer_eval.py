"""Personalizer's offline evaluation, feature importance and ``applyFromEvaluation`` routes
(``admin`` scope); the work is in :class:`~bandit.evaluation.evaluation_jobs.EvaluationJobs`.

v1.0 and v1.1-preview.3 (``{base}`` = ``/personalizer/v1.x``):

``POST {base}/evaluations``                  → 201 Evaluation (``status: pending``), ``Location``
``GET {base}/evaluations``                   → 200 ``[Evaluation]``
``GET {base}/evaluations/{evaluationId}``    → 200 Evaluation (``policyResults``) | 404
``DELETE {base}/evaluations/{evaluationId}`` → 204

2022-09-01-preview (``/personalizer/…?api-version=2022-09-01-preview``):

``PUT evaluations/{evaluationId}``            → 200 (runs in the background)
``GET evaluations[?top&skip]``                → 200 ``{"value": [...]}``
``GET evaluations/{evaluationId}?startTime&endTime[&intervalInMinutes&window]`` → 200
``DELETE evaluations/{evaluationId}``         → 204
``PUT featureImportances/{featureImportanceId}`` → 200; ``GET`` → 200 (``featureScores``);
``GET featureImportances[?top&skip]``; ``DELETE`` → 204

Every generation: ``POST configurations/applyFromEvaluation`` ``{"evaluationId",
"policyName"}`` → 204: the evaluated learning settings and the model they learned on the
logs are served from then on. ``GET /v1/admin/evaluations/{evaluationId}/report`` serves
the evaluation's replay report (HTML).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from bandit.core.schema import load_json
from bandit.evaluation import evaluations as ev
from bandit.evaluation.evaluation_jobs import EvaluationJobs
from bandit.server.http import JSONResponse, read_body
from bandit.server.personalizer_admin import grouped_routes

if TYPE_CHECKING:
    from bandit.server.service import Service

Handler = Callable[[Request], Awaitable[Response]]


class _Handlers:
    """The handlers of one API generation (``iso``: 2022-09-01-preview's shapes)."""

    def __init__(self, svc: Service, jobs: EvaluationJobs, base: str, iso: bool) -> None:
        self.svc = svc
        self.jobs = jobs
        self.base = base
        self.iso = iso
        self.limit = svc.settings.max_body_bytes

    async def _body(self, request: Request) -> Any:
        return load_json(await read_body(request, self.limit))

    async def create_v11(self, request: Request) -> Response:
        doc = await asyncio.to_thread(self.jobs.create, None, await self._body(request))
        return JSONResponse(ev.evaluation_v11(doc), status_code=201,
                            headers={"Location": f"{self.base}/evaluations/{doc['id']}"})

    async def create_2022(self, request: Request) -> Response:
        body = await self._body(request)
        await asyncio.to_thread(self.jobs.create, _job_id(request), body)
        return Response(status_code=200)

    async def list_evaluations(self, request: Request) -> Response:
        docs = await asyncio.to_thread(self.jobs.all, "evaluations")
        if self.iso:
            return JSONResponse(ev.page([ev.listed_2022(d) for d in docs], _query(request)))
        return JSONResponse([ev.evaluation_v11(d) for d in docs])

    async def get_evaluation(self, request: Request) -> Response:
        doc = await asyncio.to_thread(self.jobs.get, "evaluations", _job_id(request))
        return JSONResponse(ev.evaluation_2022(doc, _query(request)) if self.iso
                            else ev.evaluation_v11(doc))

    async def delete_evaluation(self, request: Request) -> Response:
        return await self._delete(request, "evaluations", "evaluationId")

    async def apply(self, request: Request) -> Response:
        await asyncio.to_thread(self.jobs.apply, await self._body(request))
        self.svc.refresh_config(force=True)
        await self.svc.refresh_model()
        return Response(status_code=204)

    async def create_importance(self, request: Request) -> Response:
        body = await self._body(request)
        await asyncio.to_thread(self.jobs.create_importance, _job_id(request, _FID), body)
        return Response(status_code=200)

    async def list_importances(self, request: Request) -> Response:
        docs = await asyncio.to_thread(self.jobs.all, "featureImportances")
        return JSONResponse(ev.page([ev.feature_importance_json(d) for d in docs],
                                    _query(request)))

    async def get_importance(self, request: Request) -> Response:
        doc = await asyncio.to_thread(self.jobs.get, "featureImportances",
                                      _job_id(request, _FID))
        return JSONResponse(ev.feature_importance_json(doc))

    async def delete_importance(self, request: Request) -> Response:
        return await self._delete(request, "featureImportances", _FID)

    async def _delete(self, request: Request, kind: str, name: str) -> Response:
        await read_body(request, self.limit)
        await asyncio.to_thread(self.jobs.delete, kind, _job_id(request, name))
        return Response(status_code=204)


_FID = "featureImportanceId"


def _job_id(request: Request, name: str = "evaluationId") -> str:
    return ev.check_job_id(str(request.path_params[name]), name)


def _query(request: Request) -> dict[str, str]:
    return dict(request.query_params)


def routes(svc: Service, jobs: EvaluationJobs, base: str, *, iso: bool,
           wrap: Callable[[Handler], Handler]) -> list[Route]:
    h = _Handlers(svc, jobs, base, iso)
    table: list[tuple[str, str, Handler]] = [
        ("/evaluations", "GET", h.list_evaluations),
        ("/evaluations/{evaluationId}", "GET", h.get_evaluation),
        ("/evaluations/{evaluationId}", "DELETE", h.delete_evaluation),
        ("/configurations/applyFromEvaluation", "POST", h.apply),
    ]
    if iso:
        table += [
            ("/evaluations/{evaluationId}", "PUT", h.create_2022),
            ("/featureImportances", "GET", h.list_importances),
            (f"/featureImportances/{{{_FID}}}", "GET", h.get_importance),
            (f"/featureImportances/{{{_FID}}}", "PUT", h.create_importance),
            (f"/featureImportances/{{{_FID}}}", "DELETE", h.delete_importance),
        ]
    else:
        table.append(("/evaluations", "POST", h.create_v11))
    return grouped_routes(base, wrap, table)


def report_route(svc: Service, jobs: EvaluationJobs,
                 guarded: Callable[[Handler], Handler]) -> Route:
    async def report(request: Request) -> Response:
        data = await asyncio.to_thread(jobs.report, ev.check_job_id(
            str(request.path_params["evaluationId"])))
        return HTMLResponse(data)

    return Route("/v1/admin/evaluations/{evaluationId}/report", guarded(report),
                 methods=["GET"])
