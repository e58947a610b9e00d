"""The operations behind Personalizer's evaluation, feature-importance and
``applyFromEvaluation`` routes (the HTTP layer is :mod:`bandit.server.personalizer_eval`).

An evaluation compares the online policy (the logs' own), the baseline (first action),
random, the current learning settings learned afresh, every requested learning settings
and, with ``enableOfflineExperimentation`` (``enablePolicyOptimization``), the best
settings the replay's policy search finds around the current ones, on the joined logs
between ``startTime`` and ``endTime`` (and after the last ``DELETE logs``). The work is
the replay's, in a child process (:mod:`replay.evaluation_work`), so an evaluation never
slows the worker's decisions; its replay report (the same policies through
``bandit-replay``'s estimators, JSON and HTML) is kept beside it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from bandit.config.loop_admin import LoopAdmin
from bandit.config.settings import Settings
from bandit.core.errors import BadRequest, Conflict, NotFound
from bandit.core.events import utc_now
from bandit.evaluation import evaluations as ev
from bandit.stores.modelstore import ModelStore

log = logging.getLogger("bandit.evaluation.evaluations")


def logs_source(settings: Settings) -> str | None:
    if settings.evaluation_logs:
        return settings.evaluation_logs
    if settings.kafka_bootstrap:
        return f"kafka://{settings.kafka_bootstrap.split(',')[0]}/{settings.topic('joined')}"
    return None


class EvaluationJobs:
    def __init__(self, settings: Settings, store: ModelStore | None, admin: LoopAdmin) -> None:
        self.s = settings
        self.store = store
        self.admin = admin
        self.runner = ev.Runner()

    def _jobs(self, kind: str) -> ev.JobStore:
        if self.store is None:
            raise Conflict("this server has no model store", code="OperationNotAllowed")
        return ev.JobStore(self.store, kind)

    def _source(self) -> str:
        source = logs_source(self.s)
        if source is None:
            raise Conflict("no joined logs to evaluate on: set BANDIT_EVALUATION_LOGS or "
                             "BANDIT_KAFKA_BOOTSTRAP", code="OperationNotAllowed")
        return source

    def _submit(self, kind: str, job_id: str | None, request: dict[str, Any]
                ) -> dict[str, Any]:
        jobs = self._jobs(kind)
        self._source()
        if job_id is None or jobs.load(job_id) is None:
            if jobs.count() >= ev.MAX_JOBS:
                raise Conflict(f"at most {ev.MAX_JOBS} {kind} are kept; delete some first",
                                 code="OperationNotAllowed")
        elif job_id is not None:
            jobs.delete(job_id)  # PUT replaces the job of that id
        doc = ev.new_job(job_id, request, utc_now())
        jobs.save(doc)
        # the replay does the work in a child process (off the decide path's core, and
        # the online package never imports the offline one): replay.evaluation_work
        self.runner.submit(jobs, doc, [sys.executable, "-m", "replay.evaluation_work", kind,
                                       doc["id"]], {**os.environ, **self.s.to_env()})
        return doc

    # -- evaluations ------------------------------------------------------------------------
    def create(self, job_id: str | None, body: Any) -> dict[str, Any]:
        request = ev.parse_evaluation(body)
        return self._submit("evaluations", job_id, request)

    def get(self, kind: str, job_id: str) -> dict[str, Any]:
        doc = self._jobs(kind).load(job_id)
        if doc is None:
            what = "Offline Evaluation" if kind == "evaluations" else "Feature Importance"
            raise NotFound(f"{what} not found.", code="EvaluationNotFound"
                             if kind == "evaluations" else "ResourceNotFound")
        return doc

    def all(self, kind: str) -> list[dict[str, Any]]:
        return self._jobs(kind).all()

    def delete(self, kind: str, job_id: str) -> None:
        self._jobs(kind).delete(job_id)

    def report(self, job_id: str) -> bytes:
        self.get("evaluations", job_id)
        path = self._jobs("evaluations").files(job_id) / "report.html"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound("the evaluation has no report (yet)", code="ResourceNotFound") from None

    # -- applyFromEvaluation ---------------------------------------------------------------
    def apply(self, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("evaluationId"), str) or \
                not isinstance(body.get("policyName"), str):
            raise BadRequest("the body must be {\"evaluationId\", \"policyName\"}",
                             code="BadRequest", field="evaluationId")
        jobs = self._jobs("evaluations")
        doc = self.get("evaluations", ev.check_job_id(body["evaluationId"]))
        if doc["status"] == "Running":
            raise Conflict("the evaluation has not finished", code="OperationNotAllowed")
        result = next((r for r in doc.get("results", [])
                       if r["name"] == body["policyName"]), None)
        if result is None or result["policySource"] in ("Baseline", "Random"):
            raise NotFound("Learning Settings not found in evaluation.",
                             code="LearningSettingsNotFound",
                             field="policyName")
        if result["policySource"] == "Online":
            jobs.save({**doc, "status": "OnlinePolicyRetained"})
            return
        model = jobs.files(doc["id"]) / result["model"] if result.get("model") else None
        if model is None or not model.exists():
            raise NotFound("Model not found in evaluation.", code="EvaluationModelNotFound")
        self.admin.apply_policy(result["name"], result["arguments"], str(model))
        jobs.save({**doc, "status": "OptimalPolicyApplied"})

    # -- feature importances ---------------------------------------------------------------
    def create_importance(self, job_id: str, body: Any) -> dict[str, Any]:
        request = ev.parse_feature_importance(body)
        return self._submit("featureImportances", job_id, request)
