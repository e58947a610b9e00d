"""Personalizer's offline evaluation, feature importance and ``applyFromEvaluation`` routes
(``admin`` scope); the work is in :class:`~bandit.evaluation_jobs.EvaluationJobs`.

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
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from bandit import evaluations as ev
from bandit.evaluation_jobs import EvaluationJobs
from bandit.schema import load_json
from bandit.server.http import JSONResponse, read_body
from bandit.server.personalizer_admin import by_method

if TYPE_CHECKING:
    from bandit.server.service import Service

Handler = Callable[[Request], Awaitable[Response]]


def routes(svc: Service, jobs: EvaluationJobs, base: str, *, iso: bool,
           wrap: Callable[[Handler], Handler]) -> list[Route]:
    limit = svc.settings.max_body_bytes

    def job_id(request: Request, name: str = "evaluationId") -> str:
        return ev.check_job_id(str(request.path_params[name]), name)

    def query(request: Request) -> dict[str, str]:
        return dict(request.query_params)

    async def create_v11(request: Request) -> Response:
        body = load_json(await read_body(request, limit))
        doc = await asyncio.to_thread(jobs.create, None, body)
        return JSONResponse(ev.evaluation_v11(doc), status_code=201,
                            headers={"Location": f"{base}/evaluations/{doc['id']}"})

    async def create_2022(request: Request) -> Response:
        body = load_json(await read_body(request, limit))
        await asyncio.to_thread(jobs.create, job_id(request), body)
        return Response(status_code=200)

    async def list_evaluations(request: Request) -> Response:
        docs = await asyncio.to_thread(jobs.all, "evaluations")
        if iso:
            return JSONResponse(ev.page([ev.listed_2022(d) for d in docs], query(request)))
        return JSONResponse([ev.evaluation_v11(d) for d in docs])

    async def get_evaluation(request: Request) -> Response:
        doc = await asyncio.to_thread(jobs.get, "evaluations", job_id(request))
        return JSONResponse(ev.evaluation_2022(doc, query(request)) if iso
                            else ev.evaluation_v11(doc))

    async def delete_evaluation(request: Request) -> Response:
        await read_body(request, limit)
        await asyncio.to_thread(jobs.delete, "evaluations", job_id(request))
        return Response(status_code=204)

    async def apply(request: Request) -> Response:
        body = load_json(await read_body(request, limit))
        await asyncio.to_thread(jobs.apply, body)
        svc.refresh_config(force=True)
        await svc.refresh_model()
        return Response(status_code=204)

    fid = "featureImportanceId"

    async def create_importance(request: Request) -> Response:
        body = load_json(await read_body(request, limit))
        await asyncio.to_thread(jobs.create_importance, job_id(request, fid), body)
        return Response(status_code=200)

    async def list_importances(request: Request) -> Response:
        docs = await asyncio.to_thread(jobs.all, "featureImportances")
        return JSONResponse(ev.page([ev.feature_importance_json(d) for d in docs],
                                    query(request)))

    async def get_importance(request: Request) -> Response:
        doc = await asyncio.to_thread(jobs.get, "featureImportances", job_id(request, fid))
        return JSONResponse(ev.feature_importance_json(doc))

    async def delete_importance(request: Request) -> Response:
        await read_body(request, limit)
        await asyncio.to_thread(jobs.delete, "featureImportances", job_id(request, fid))
        return Response(status_code=204)

    table: list[tuple[str, str, Handler]] = [
        ("/evaluations", "GET", list_evaluations),
        ("/evaluations/{evaluationId}", "GET", get_evaluation),
        ("/evaluations/{evaluationId}", "DELETE", delete_evaluation),
        ("/configurations/applyFromEvaluation", "POST", apply),
    ]
    if iso:
        table += [
            ("/evaluations/{evaluationId}", "PUT", create_2022),
            ("/featureImportances", "GET", list_importances),
            (f"/featureImportances/{{{fid}}}", "GET", get_importance),
            (f"/featureImportances/{{{fid}}}", "PUT", create_importance),
            (f"/featureImportances/{{{fid}}}", "DELETE", delete_importance),
        ]
    else:
        table.append(("/evaluations", "POST", create_v11))
    by_path: dict[str, dict[str, Handler]] = {}
    for path, method, fn in table:
        by_path.setdefault(path, {})[method] = fn
    return [Route(base + path, wrap(by_method(fns)), methods=list(fns))
            for path, fns in by_path.items()]


def report_route(svc: Service, jobs: EvaluationJobs,
                 guarded: Callable[[Handler], Handler]) -> Route:
    async def report(request: Request) -> Response:
        data = await asyncio.to_thread(jobs.report, ev.check_job_id(
            str(request.path_params["evaluationId"])))
        return HTMLResponse(data)

    return Route("/v1/admin/evaluations/{evaluationId}/report", guarded(report),
                 methods=["GET"])
