"""The work of the Personalizer evaluation and feature-importance jobs, run by the
server in a child process: ``python -m replay.evaluation_work KIND JOB_ID``.

The child reads the service's settings from its ``BANDIT_*`` environment (the server
passes its own), the job's request from the model store's job documents
(:mod:`bandit.evaluation.evaluations`), the joined logs, and writes the result into the document
(unless the job was deleted or replaced meanwhile). See :mod:`replay.offline_eval` for
what is computed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from bandit.config.loop_admin import LoopAdmin
from bandit.config.settings import Settings
from bandit.evaluation import evaluations as ev
from bandit.evaluation.evaluation_jobs import logs_source
from bandit.stores.modelstore import ModelStore, ModelStoreError

log = logging.getLogger("bandit.evaluation.evaluations")


class EvaluationWork:
    def __init__(self, settings: Settings, store: ModelStore) -> None:
        self.s = settings
        self.store = store
        self.admin = LoopAdmin(settings, store)

    def _jobs(self, kind: str) -> ev.JobStore:
        return ev.JobStore(self.store, kind)

    def _source(self) -> str:
        source = logs_source(self.s)
        if source is None:
            raise ValueError("no joined logs to evaluate on: set BANDIT_EVALUATION_LOGS or "
                             "BANDIT_KAFKA_BOOTSTRAP")
        return source

    def _logs(self, start: float, end: float) -> Any:
        from replay.offline_eval import in_range
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

    def _candidates(self, doc: dict[str, Any]) -> list[Any]:
        from replay.offline_eval import Candidate

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
        from replay.offline_eval import replay_report, score, tiers

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
        from bandit.config.learning_settings import arguments_of
        from replay.offline_eval import Candidate
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
        from replay.offline_eval import importance

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

    def _feature_scores(self, doc: dict[str, Any]) -> dict[str, Any]:
        logs = self._logs(doc["start"], doc["end"])
        scores = self._importance(logs)
        if scores is None:
            raise ValueError("no model is served yet")
        return {"featureScores": scores, "rows": logs.n}

    def run(self, kind: str, job_id: str) -> None:
        jobs = self._jobs(kind)
        doc = jobs.load(job_id)
        if doc is None or doc.get("status") != "Running":
            return  # deleted, or finished already
        work = self._evaluate if kind == "evaluations" else self._feature_scores
        ev.finish(jobs, doc, work)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ev.KINDS:
        print(f"usage: python -m replay.evaluation_work {{{','.join(ev.KINDS)}}} JOB_ID",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s "
                                                   "%(message)s")
    settings = Settings.from_env()
    EvaluationWork(settings, ModelStore(settings.model_dir, settings.model_keep)).run(*args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
