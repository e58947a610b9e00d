"""The Starlette application: thin routes over :class:`~bandit.server.service.Service`.

``create_app(settings, policy, sink)`` builds it from parts (tests, benchmarks);
``app_from_env()`` builds the parts from ``BANDIT_*`` variables (uvicorn workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bandit.config.settings import Settings
from bandit.core.errors import BadRequest, Conflict, NotFound, ServiceError
from bandit.core.features import Limits
from bandit.core.offerstats import OfferStats
from bandit.core.policy import Policy, VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.core.types import NONE_ID, DecideRequest, Decision
from bandit.server import offer_routes, personalizer
from bandit.server.batching import BatchRunner, run_inline
from bandit.server.fast import BodyHandler, FastRoutes, HotRoute
from bandit.server.guard import Guard
from bandit.server.http import JSONResponse, error_response, read_body, routed
from bandit.server.metrics import Metrics, exposition
from bandit.server.openapi import openapi_document
from bandit.server.service import Service
from bandit.server.shared_live import SharedLive
from bandit.server.status import render as render_status
from bandit.server.value_step import ValueAware
from bandit.stores.checkpoint import Checkpoint
from bandit.stores.modelstore import ModelStore, ModelStoreError
from bandit.stores.userstore import load_salt, make_user_store
from bandit.streaming.sinks import EventSink, make_sink
from bandit.value.catalogue_view import CatalogueView
from bandit.value.ranking import ValueRanking

log = logging.getLogger("bandit.server")

Handler = Callable[[Request], Awaitable[Response]]


def guarded(service: Service, fn: Handler) -> Handler:
    """Turn a :class:`ServiceError` into its 4xx/503 reply and count it by code."""

    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except ServiceError as exc:
            service.metrics.errors.labels(exc.code).inc()
            return error_response(exc)

    return wrapper


def ranking_json(request: DecideRequest, decision: Decision) -> list[dict[str, Any]]:
    offers = request.offers
    return [{"id": oid if (oid := offers[i].id) != NONE_ID else None, "probability": p}
            for i, p in zip(decision.order, decision.probabilities, strict=True)]


def hot_routes(svc: Service) -> dict[str, BodyHandler]:
    """The POST routes served by :class:`~bandit.server.fast.FastRoutes`: body → reply."""

    def decide(body: bytes) -> tuple[int, Any]:
        req, decision = svc.decide(svc.parser.decide(body))
        ranking = ranking_json(req, decision)
        out: dict[str, Any] = {
            "event_id": req.event_id, "ranking": ranking, "slots": ranking[: decision.slots],
            "model_version": decision.model_version, "policy": decision.policy}
        info = decision.info
        for key in ("path", "explain", "predictions"):
            if key in info:
                out[key] = info[key]
        return 200, out

    def rewards(body: bytes) -> tuple[int, Any]:
        reward = svc.parser.reward(body)
        svc.reward(reward)
        return 202, {"event_id": reward.event_id or None, "status": "accepted"}

    return {"/v1/decide": decide, "/v1/rewards": rewards}


def native_routes(svc: Service) -> list[Route]:
    limit = svc.settings.max_body_bytes
    hot = hot_routes(svc)
    decide, rewards = routed(hot["/v1/decide"], limit), routed(hot["/v1/rewards"], limit)

    async def activate(request: Request) -> Response:
        await read_body(request, limit)
        event_id = _path_id(svc, request, "event_id")
        svc.activate(event_id)
        return JSONResponse({"event_id": event_id, "status": "accepted"}, status_code=202)

    async def model(request: Request) -> Response:
        return JSONResponse(svc.model_info())

    return [
        Route("/v1/decide", guarded(svc, decide), methods=["POST"]),
        Route("/v1/rewards", guarded(svc, rewards), methods=["POST"]),
        Route("/v1/events/{event_id}/activate", guarded(svc, activate), methods=["POST"]),
        Route("/v1/model", guarded(svc, model), methods=["GET"]),
        *admin_routes(svc),
    ]


def admin_routes(svc: Service) -> list[Route]:
    """Rollback (pin a stored version, unpin) and the arm guard's reset."""
    limit = svc.settings.max_body_bytes

    async def pin(request: Request) -> Response:
        body = await read_body(request, limit)
        try:
            obj = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            raise BadRequest("body must be JSON: {\"version\": \"000042\"}") from None
        version = obj.get("version") if isinstance(obj, dict) else None
        if not isinstance(version, str) or not version:
            raise BadRequest("version must name a stored model version", field="version")
        if svc.store is None:
            raise Conflict("this server has no model store", code="Conflict")
        try:
            m = svc.store.pin(version)
        except ModelStoreError as exc:
            raise NotFound(str(exc), field="version", code="NotFound") from None
        await svc.refresh_model()
        return JSONResponse({"pinned": m.version})

    async def unpin(request: Request) -> Response:
        await read_body(request, limit)
        if svc.store is None:
            raise Conflict("this server has no model store", code="Conflict")
        svc.store.unpin()
        await svc.refresh_model()
        return JSONResponse({"pinned": None})

    async def arm_guard_reset(request: Request) -> Response:
        await read_body(request, limit)
        svc.arm_guard.reset()
        return JSONResponse({"arm_guard": "reset"})

    return [
        Route("/v1/admin/arm-guard/reset", guarded(svc, arm_guard_reset), methods=["POST"]),
        Route("/v1/admin/pin", guarded(svc, pin), methods=["POST"]),
        Route("/v1/admin/unpin", guarded(svc, unpin), methods=["POST"]),
        *objective_routes(svc),
    ]


def objective_routes(svc: Service) -> list[Route]:
    """The objective of value-aware ranking: read it, and change it on every worker
    (from their next model poll on) without relearning."""
    limit = svc.settings.max_body_bytes

    def ranking() -> ValueRanking:
        if svc.value_aware.ranking is None:
            raise Conflict("value-aware ranking is off: set BANDIT_OBJECTIVE",
                           field="objective", code="Conflict")
        return svc.value_aware.ranking

    async def get(request: Request) -> Response:
        return JSONResponse({"objective": ranking().objective.text})

    async def put(request: Request) -> Response:
        body = await read_body(request, limit)
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest("body must be JSON: {\"objective\": \"click + 5 * conversion * "
                             "payout\"}") from None
        text = obj.get("objective") if isinstance(obj, dict) else None
        return JSONResponse({"objective": ranking().set_objective(text).text})

    return [offer_routes.by_method("/v1/admin/objective",
                                   {"GET": guarded(svc, get), "PUT": guarded(svc, put)})]


def _path_id(svc: Service, request: Request, name: str) -> str:
    from bandit.core.schema import check_id

    value = check_id(request.path_params[name], name, svc.settings.max_id_bytes)
    assert value is not None
    return value


def ops_routes(svc: Service) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        sink = svc.sink.health()
        ready = bool(sink.get("ready"))
        body = {"ready": ready, "model_version": svc.policy.version, "sink": sink}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        health = svc.sink.health()
        if "spool_depth" in health:
            svc.metrics.spool_depth.set(float(health["spool_depth"]))
        data, ctype = exposition(svc.metrics.registry)
        return Response(data, media_type=ctype)

    doc = openapi_document()

    async def openapi(request: Request) -> Response:
        return JSONResponse(doc)

    async def status(request: Request) -> Response:
        return HTMLResponse(render_status(svc))

    return [
        Route("/", status, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


class _App(Starlette):
    """Starlette with the guard and the fast routes outside its own middleware stack
    (see :mod:`bandit.server.fast`)."""

    def __init__(self, *, outer: list[Middleware], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._outer = outer

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for cls, args, kwargs in reversed(self._outer):
            app = cls(app, *args, **kwargs)
        return app


def create_app(settings: Settings, policy: Policy, sink: EventSink,
               registry: CollectorRegistry | None = None,
               store: ModelStore | None = None) -> Starlette:
    """The ASGI app. ``store`` enables polling it for new models (hot swap)."""
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    svc = make_service(settings, policy, sink, metrics, store)
    routes = (native_routes(svc) + offer_routes.routes(svc, guarded) +
              personalizer.routes(svc, guarded) + ops_routes(svc))
    guard = Middleware(Guard, keys=settings.keys, rate=settings.rate_limit,
                       reward_rate=settings.reward_rate_limit,
                       body_timeout=settings.request_timeout,
                       on_refuse=lambda code: metrics.errors.labels(code).inc())

    def count_error(exc: ServiceError) -> None:
        metrics.errors.labels(exc.code).inc()

    def crashed(path: str, exc: Exception) -> None:
        log.exception("unhandled error on %s", path, exc_info=exc)
        metrics.errors.labels("InternalError").inc()

    hot = {path: HotRoute(h) for path, h in hot_routes(svc).items()}
    hot.update(personalizer.hot_routes(svc))
    fast = Middleware(FastRoutes, routes=hot, limit=settings.max_body_bytes,
                      on_error=count_error, on_crash=crashed,
                      run=BatchRunner(metrics.batch_ran) if settings.batch_handlers
                      else run_inline)
    app = _App(routes=routes, lifespan=_lifespan(svc), outer=[guard, fast])
    app.state.service = svc
    _handle_errors(app, svc)
    return app


def make_service(settings: Settings, policy: Policy, sink: EventSink, metrics: Metrics,
                 store: ModelStore | None) -> Service:
    """The service and its parts: the store's manifest when it is the served model's,
    the user store, the salt, the experiment, the shadow and LightGBM arm policies."""
    manifest = None
    if store is not None:
        with contextlib.suppress(ModelStoreError):
            current = store.serving()
            if current is not None and current.version == policy.version:
                manifest = current
    users = make_user_store(settings.user_store_kind(), settings.signal_ttl, settings.cap,
                            settings.budgets, settings.max_users)
    limits = Limits(settings.max_features, settings.max_name_bytes, settings.max_depth)
    offers = CatalogueView(settings.catalogue_source(settings.model_dir), limits)
    return Service(settings, policy, sink, metrics, store, manifest, users,
                   load_salt(settings.user_salt, settings.model_dir),
                   settings.experiment_spec,
                   make_shadow(settings, policy), make_lgbm_arm(settings),
                   shared=SharedLive(Path(settings.shared_dir) / "live.sqlite")
                   if settings.shared_dir else None,
                   value_aware=ValueAware(offers, make_value_ranking(settings, store, offers)))


def make_value_ranking(settings: Settings, store: ModelStore | None,
                       offers: CatalogueView) -> ValueRanking | None:
    """Value-aware ranking when ``BANDIT_OBJECTIVE`` is set: the store's heads, the
    objective, the constraints at inference and (with the embeddings extra) the
    cold-start priors of new catalogue offers. The daily budgets' spend is kept in
    ``BANDIT_BUDGET_LEDGER`` (default the model dir's
    :data:`~bandit.value.spend_ledger.LEDGER_FILE`), the host's workers' together."""
    objective = settings.objective_spec
    if objective is None:
        return None
    cold = None
    if settings.cold_start_on:
        from bandit.value.cold_start import ColdStart
        from bandit.value.embeddings import OfferEmbeddings

        cold = ColdStart(OfferEmbeddings(), lambda: offers.entries, offers.offer,
                         lambda: offers.revision, settings.new_offer_impressions)
    return ValueRanking(objective, settings.head_kinds, settings.exploration_spec, store,
                        settings.constraint_spec.build(
                            settings.budget_ledger_path(settings.model_dir)),
                        settings.seed, cold)


def _lifespan(svc: Service) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """Polls the model store and shares the live counts while the app runs; closes the
    sink at the end."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = []
        if svc.store is not None:
            tasks.append(asyncio.create_task(svc.poll_models()))
        if svc.shared is not None:
            tasks.append(asyncio.create_task(svc.counts.share_forever(svc.arm_guard)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            svc.sink.close()
            if svc.value_aware.offers is not None:
                svc.value_aware.offers.close()

    return lifespan


def _handle_errors(app: Starlette, svc: Service) -> None:
    """Every error the router or a bug raises is a JSON error reply."""

    async def on_error(request: Request, exc: Exception) -> Response:
        # Reached only by a bug: say so without leaking internals, keep the worker alive.
        log.exception("unhandled error on %s", request.url.path, exc_info=exc)
        svc.metrics.errors.labels("InternalError").inc()
        return JSONResponse({"error": {"code": "InternalError",
                                       "message": "internal error"}}, status_code=500)

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": {"code": "NotFound",
                                       "message": f"no route {request.url.path}"}},
                            status_code=404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        headers = dict(getattr(exc, "headers", None) or {})  # Allow: the methods there are
        return JSONResponse({"error": {"code": "MethodNotAllowed",
                                       "message": f"{request.method} is not allowed on "
                                                  f"{request.url.path}"}}, status_code=405,
                            headers=headers)

    app.add_exception_handler(Exception, on_error)
    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_allowed)


def make_lgbm_arm(settings: Settings) -> Policy | None:
    if not settings.lgbm_arm:
        return None
    from bandit.core.lgbm_policy import LGBMPolicy

    spec = settings.lgbm_arm if settings.lgbm_arm.startswith("lgbm:") else \
        f"lgbm:{settings.lgbm_arm}"
    return LGBMPolicy(spec, settings.seed, settings.ranking_options())


def make_shadow(settings: Settings, policy: Policy) -> tuple[Policy, str] | None:
    """The shadow policy: a saved model (``vw:PATH``) or a baseline sharing the served
    policy's statistics (``popularity``, ``uniform``, ``fixed``)."""
    spec = settings.shadow_policy
    if not spec:
        return None
    if spec.startswith("vw:"):
        from bandit.core.vw_adapter import VWModel

        model = VWModel.load(spec[3:])
        return VWPolicy(policy.spec, model, "shadow", settings.seed,
                        settings.ranking_options()), "model"
    return policy, spec


def load_policy(settings: Settings, store: ModelStore) -> VWPolicy:
    """The store's current model if it loads and verifies, else a fresh one."""
    spec = settings.policy_spec
    if spec is None:
        raise ValueError("a LightGBM policy is not loaded from the model store")
    try:
        manifest = store.serving()
        if manifest is not None:
            model = store.load(manifest)
            try:
                spec = PolicySpec.parse(manifest.policy)
            except ValueError:
                pass
            return VWPolicy(spec, model, manifest.version, settings.seed,
                            settings.ranking_options(),
                            OfferStats.restore(Checkpoint.of(manifest).offer_stats),
                            manifest.events_learned)
    except ModelStoreError as exc:
        log.warning("not serving the stored model: %s; starting from a fresh one", exc)
    return VWPolicy.fresh(spec, settings.seed, settings.ranking_options())


def app_from_env() -> Starlette:
    """uvicorn factory: ``uvicorn --factory bandit.server.app:app_from_env``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s "
                                                   "%(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is per-connection chatter
    settings = Settings.from_env()
    if settings.lgbm_policy is not None:  # a trained LightGBM model: no hot swap
        from bandit.core.lgbm_policy import LGBMPolicy

        lgbm = LGBMPolicy(settings.policy, settings.seed, settings.ranking_options())
        return create_app(settings, lgbm, make_sink(settings), store=None)
    store = ModelStore(settings.model_dir, settings.model_keep)
    policy = load_policy(settings, store)
    return create_app(settings, policy, make_sink(settings), store=store)
