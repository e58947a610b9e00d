"""The operations behind Personalizer's evaluation, feature-importance and
``applyFromEvaluation`` routes (the HTTP layer is :mod:`bandit.server.personalizer_eval`).

An evaluation compares the online policy (the logs' own), the baseline (first action),
random, the current learning settings learned afresh, every requested learning settings
and, with ``enableOfflineExperimentation`` (``enablePolicyOptimization``), the best
settings the replay's policy search finds around the current ones, on the joined logs
between ``startTime`` and ``endTime`` (and after the last ``DELETE logs``); see
:mod:`bandit.offline_eval`. Its replay report (the same policies through
``bandit-replay``'s estimators, JSON and HTML) is kept beside it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bandit import evaluations as ev
from bandit.errors import BadRequest
from bandit.events import utc_now
from bandit.loop_admin import LoopAdmin
from bandit.modelstore import ModelStore, ModelStoreError
from bandit.settings import Settings

log = logging.getLogger("bandit.evaluations")


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
            raise BadRequest("this server has no model store", code="OperationNotAllowed",
                             status=409)
        return ev.JobStore(self.store, kind)

    def _source(self) -> str:
        source = logs_source(self.s)
        if source is None:
            raise BadRequest("no joined logs to evaluate on: set BANDIT_EVALUATION_LOGS or "
                             "BANDIT_KAFKA_BOOTSTRAP", code="OperationNotAllowed", status=409)
        return source

    def _logs(self, start: float, end: float) -> Any:
        from bandit.offline_eval import in_range
        from replay.readers import read

        logs = read(self._source(), keep_rows=True)
        cleared = self.admin.config().logs_cleared_at
        if cleared is not None:
            start = max(start, ev.parse_time(cleared, "logsClearedAt"))
        logs = in_range(logs, start, end)
        if logs.n == 0:
            raise ValueError(f"NoLogsExistInDateRange: no joined decisions between "
                             f"{ev.iso(start)} and {ev.iso(end)}")
        return logs

    def _submit(self, kind: str, job_id: str | None, request: dict[str, Any], work: Any
                ) -> dict[str, Any]:
        jobs = self._jobs(kind)
        self._source()
        if job_id is None or jobs.load(job_id) is None:
            if jobs.count() >= ev.MAX_JOBS:
                raise BadRequest(f"at most {ev.MAX_JOBS} {kind} are kept; delete some first",
                                 code="OperationNotAllowed", status=409)
        elif job_id is not None:
            jobs.delete(job_id)  # PUT replaces the job of that id
        doc = ev.new_job(job_id, request, utc_now())
        jobs.save(doc)
        self.runner.submit(jobs, doc, work)
        return doc

    # -- evaluations ------------------------------------------------------------------------
    def create(self, job_id: str | None, body: Any) -> dict[str, Any]:
        request = ev.parse_evaluation(body)
        return self._submit("evaluations", job_id, request, self._evaluate)

    def _candidates(self, doc: dict[str, Any]) -> list[Any]:
        from bandit.offline_eval import Candidate

        online = self.admin.policy_json()
        cands = [Candidate(online["name"], online["arguments"], "Online"),
                 Candidate("Baseline", "", "Baseline"), Candidate("Random", "", "Random")]
        names = {c.name for c in cands}
        current = str(self.admin.spec())
        if not any(p["spec"] == current for p in doc["policies"]):
            name = "Current learning settings"
            cands.append(Candidate(name, online["arguments"], "Custom", current))
            names.add(name)
        for p in doc["policies"]:
            name = p["name"] if p["name"] not in names else f"{p['name']} (custom)"
            cands.append(Candidate(name, p["arguments"], "Custom", p["spec"]))
        return cands

    def _evaluate(self, doc: dict[str, Any]) -> dict[str, Any]:
        from bandit.offline_eval import replay_report, score, tiers

        logs = self._logs(doc["start"], doc["end"])
        cands = self._candidates(doc)
        search = self._search(logs, cands) if doc.get("optimize") else None
        if search is not None and search[0] is not None:
            cands.append(search[0])
        files = self._jobs("evaluations").files(doc["id"])
        files.mkdir(parents=True, exist_ok=True)
        scored = score(logs, cands, self.s.seed, files)
        results = [{"name": x.candidate.name, "arguments": x.candidate.arguments,
                    "policySource": x.candidate.source, "bins": x.bins,
                    "model": Path(x.model_path).name if x.model_path else None}
                   for x in scored]
        out: dict[str, Any] = {"results": results, "rows": logs.n,
                               "optimalPolicy": ev.best_policy(results)}
        if search is not None:
            out["description"] = search[1]
            out["search"] = search[2]
        try:
            report = replay_report(logs, cands, self.s.seed)
            out["replay"] = report.as_json()
            from replay.report import write_report

            write_report(report, files / "report.html", f"evaluation {doc['name']}")
        except Exception as exc:  # the Personalizer results stand without the report
            log.warning("replay report of evaluation %s failed: %s", doc["id"], exc)
        scores = self._importance(logs)
        if scores is not None:
            out["featureTiers"] = tiers(scores)
        return out

    def _search(self, logs: Any, cands: list[Any]) -> tuple[Any, str, dict[str, Any]]:
        """Offline experimentation: the replay's policy search around the current
        learning settings (:func:`replay.optimize.optimize`, ranked by IPS against the
        logged policy, Bonferroni-corrected); its best spec joins the comparison unless it
        is one of the compared ones already."""
        from bandit.learning_settings import arguments_of
        from bandit.offline_eval import Candidate
        from replay.optimize import optimize

        result = optimize(logs, None, current=str(self.admin.spec()), estimators="ips,snips",
                          rank_by="ips", n_bootstrap=0, seed=self.s.seed)
        best = result.best
        p = best.paired["ips"]
        verdict = (f"policy search: {len(result.ranked)} learning settings compared on "
                   f"{result.n} rows; the best, {best.name}, is {p.difference:+.4f} in IPS "
                   f"against the logged policy (corrected interval {p.ci_corrected[0]:+.4f} "
                   f"to {p.ci_corrected[1]:+.4f}: "
                   f"{'better' if result.winner is not None else 'not shown better'})")
        summary = {"ranked": [r.name for r in result.ranked[:10]], "best": best.name,
                   "ips": float(best.estimates["ips"].value),
                   "beats_logged": result.winner is not None}
        if any(c.spec == str(best.candidate.spec) for c in cands):
            return None, verdict, summary  # already compared
        return (Candidate("Optimized learning settings", arguments_of(best.candidate.spec),
                          "OfflineExperimentation", str(best.candidate.spec)), verdict, summary)

    def _importance(self, logs: Any) -> list[dict[str, Any]] | None:
        from bandit.offline_eval import importance

        store = self.store
        assert store is not None
        try:
            manifest = store.serving()
            if manifest is None:
                return None
            model = store.load(manifest)
        except ModelStoreError:
            return None
        try:
            return importance(logs, model.predict)
        finally:
            model.close()

    def get(self, kind: str, job_id: str) -> dict[str, Any]:
        doc = self._jobs(kind).load(job_id)
        if doc is None:
            what = "Offline Evaluation" if kind == "evaluations" else "Feature Importance"
            raise BadRequest(f"{what} not found.", code="EvaluationNotFound"
                             if kind == "evaluations" else "ResourceNotFound", status=404)
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
            raise BadRequest("the evaluation has no report (yet)", code="ResourceNotFound",
                             status=404) from None

    # -- applyFromEvaluation ---------------------------------------------------------------
    def apply(self, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("evaluationId"), str) or \
                not isinstance(body.get("policyName"), str):
            raise BadRequest("the body must be {\"evaluationId\", \"policyName\"}",
                             code="BadRequest", field="evaluationId")
        jobs = self._jobs("evaluations")
        doc = self.get("evaluations", ev.check_job_id(body["evaluationId"]))
        if doc["status"] == "Running":
            raise BadRequest("the evaluation has not finished", code="OperationNotAllowed",
                             status=409)
        result = next((r for r in doc.get("results", [])
                       if r["name"] == body["policyName"]), None)
        if result is None or result["policySource"] in ("Baseline", "Random"):
            raise BadRequest("Learning Settings not found in evaluation.",
                             code="LearningSettingsNotFound", status=404,
                             field="policyName")
        if result["policySource"] == "Online":
            jobs.save({**doc, "status": "OnlinePolicyRetained"})
            return
        model = jobs.files(doc["id"]) / result["model"] if result.get("model") else None
        if model is None or not model.exists():
            raise BadRequest("Model not found in evaluation.", code="EvaluationModelNotFound",
                             status=404)
        self.admin.apply_policy(result["name"], result["arguments"], str(model))
        jobs.save({**doc, "status": "OptimalPolicyApplied"})

    # -- feature importances ---------------------------------------------------------------
    def create_importance(self, job_id: str, body: Any) -> dict[str, Any]:
        request = ev.parse_feature_importance(body)
        return self._submit("featureImportances", job_id, request, self._feature_scores)

    def _feature_scores(self, doc: dict[str, Any]) -> dict[str, Any]:
        logs = self._logs(doc["start"], doc["end"])
        scores = self._importance(logs)
        if scores is None:
            raise ValueError("no model is served yet")
        return {"featureScores": scores, "rows": logs.n}
