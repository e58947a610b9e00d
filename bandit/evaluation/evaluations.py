"""Offline evaluations and feature-importance evaluations as jobs, kept in the model store.

A job is one JSON document in ``<model store>/evaluations/`` (its file named by a hash of
its id, so any id is a safe file name), written atomically, so every worker lists and
reads the same jobs. The worker that accepts a job runs it in a child process (one job
at a time per worker), which writes its result into the document: the computation is
the replay's (:mod:`replay.evaluation_work`, :mod:`replay.offline_eval`), on the joined
logs of ``BANDIT_EVALUATION_LOGS`` (a DSJSON file or directory, or
``kafka://host:port/topic``; by default the loop's own joined topic when Kafka is
configured). A job whose child fails is ``Failed`` with the reason; one
whose worker stops before it finishes stays ``Running``.

The documents are rendered in Personalizer's two shapes: v1.1-preview.3 (``policyResults``
with 5-minute ``summary`` entries and a ``totalSummary``) and 2022-09-01-preview (``content``
with a ``summary`` and a ``timeseries`` per policy, aggregated as the GET asks).
"""

from __future__ import annotations

import hashlib
import logging
import math
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bandit.config.learning_settings import spec_from_arguments
from bandit.core.errors import BadRequest
from bandit.stores.modelstore import ModelStore, atomic_write

log = logging.getLogger("bandit.evaluation.evaluations")

KINDS = ("evaluations", "featureImportances")
# internal status -> (v1.1-preview.3, 2022-09-01-preview)
STATUS = {"Running": ("pending", "Running"), "Succeeded": ("completed", "Succeeded"),
          "Failed": ("failed", "Failed"), "OptimalPolicyApplied":
          ("optimalPolicyApplied", "OptimalPolicyApplied"),
          "OnlinePolicyRetained": ("onlinePolicyRetained", "OnlinePolicyRetained")}
INTERVALS = (5, 60, 360, 720, 1440)
MAX_JOBS = 1000


def parse_time(value: Any, name: str, code: str = "InvalidEvaluationContract") -> float:
    """Epoch seconds of an ISO-8601 date-time (``2019-01-19T00:00:00Z``)."""
    if isinstance(value, str) and 0 < len(value) <= 64:
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
        except ValueError:
            pass
        else:
            epoch = (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
            try:
                iso(epoch)  # within the years a UTC date-time can be written in
            except (ValueError, OverflowError, OSError):
                pass
            else:
                return epoch
    raise BadRequest(f"{name} must be an ISO-8601 date-time such as 2019-01-19T00:00:00Z",
                     field=name, code=code)


def iso(t: float) -> str:
    d = datetime.fromtimestamp(t, UTC)
    return f"{d.year:04d}-" + d.strftime("%m-%dT%H:%M:%SZ")  # (%Y does not pad year 175)


def check_job_id(value: str, what: str = "evaluationId") -> str:
    if not value or len(value) > 256:
        raise BadRequest(f"{what} must be 1 to 256 characters", field=what,
                         code="InvalidEvaluationContract")
    return value


def _name(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name or len(name) > 256:
        raise BadRequest("name must be a string of 1 to 256 characters", field="name",
                         code="InvalidEvaluationContract")
    return name


def _range(body: dict[str, Any]) -> tuple[float, float]:
    start = parse_time(body.get("startTime"), "startTime")
    end = parse_time(body.get("endTime"), "endTime")
    if end <= start:
        raise BadRequest("endTime must be after startTime", field="endTime",
                         code="InvalidEvaluationContract")
    return start, end


def parse_evaluation(body: Any) -> dict[str, Any]:
    """An EvaluationContract (either generation) → the job's request fields; raises
    :class:`BadRequest` naming the field."""
    if not isinstance(body, dict):
        raise BadRequest("the evaluation must be a JSON object", code="InvalidEvaluationContract")
    name = _name(body)
    start, end = _range(body)
    policies = body.get("policies", [])
    if policies is None:
        policies = []
    if not isinstance(policies, list) or len(policies) > 10:
        raise BadRequest("policies must be a list of at most 10 learning settings",
                         field="policies", code="InvalidEvaluationContract")
    seen: set[str] = set()
    out = []
    for i, p in enumerate(policies):
        where = f"policies[{i}]"
        if not isinstance(p, dict):
            raise BadRequest(f"{where} must be {{\"name\", \"arguments\"}}", field=where,
                             code="InvalidEvaluationContract")
        pname, args = p.get("name"), p.get("arguments")
        if not isinstance(pname, str) or not pname or len(pname) > 256:
            raise BadRequest(f"{where}.name must be a string of 1 to 256 characters",
                             field=f"{where}.name", code="InvalidEvaluationContract")
        if pname in seen:
            raise BadRequest("Custom policy names should be unique.", field=f"{where}.name",
                             code="DuplicateCustomPolicyNames")
        seen.add(pname)
        if not isinstance(args, str) or len(args) > 1024:
            raise BadRequest(f"{where}.arguments must be a string of at most 1024 characters",
                             field=f"{where}.arguments", code="InvalidEvaluationContract")
        try:
            spec = spec_from_arguments(args)
        except BadRequest as exc:
            raise BadRequest(f"{where}.arguments: {exc.message}", field=f"{where}.arguments",
                             code=exc.code) from None
        out.append({"name": pname, "arguments": args, "spec": str(spec)})
    for field in ("enableOfflineExperimentation", "enablePolicyOptimization"):
        if body.get(field) is not None and not isinstance(body[field], bool):
            raise BadRequest(f"{field} must be true or false", field=field,
                             code="InvalidEvaluationContract")
    optimize = next((body[f] for f in ("enableOfflineExperimentation",
                                       "enablePolicyOptimization")
                     if body.get(f) is not None), False)
    return {"name": name, "start": start, "end": end, "policies": out,
            "optimize": bool(optimize)}


def parse_feature_importance(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the feature importance must be a JSON object",
                         code="InvalidEvaluationContract")
    name = _name(body)
    start, end = _range(body)
    return {"name": name, "start": start, "end": end}


def _plain(value: Any) -> Any:
    """numpy scalars and other numbers of the replay's results as JSON numbers."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return x if math.isfinite(x) else None


class JobStore:
    """The job documents of one kind under the model store."""

    def __init__(self, store: ModelStore, kind: str) -> None:
        self.dir = store.dir / kind
        self.kind = kind

    def path(self, job_id: str) -> Path:
        return self.dir / (hashlib.sha256(job_id.encode("utf-8")).hexdigest()[:32] + ".json")

    def files(self, job_id: str) -> Path:
        """A directory for the job's files (its models, its report)."""
        return self.path(job_id).with_suffix("")

    def save(self, doc: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path(doc["id"]), orjson.dumps(
            doc, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS))

    def load(self, job_id: str) -> dict[str, Any] | None:
        try:
            obj = orjson.loads(self.path(job_id).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        return obj if isinstance(obj, dict) and obj.get("id") == job_id else None

    def all(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.dir.glob("*.json")) if self.dir.exists() else []:
            try:
                obj = orjson.loads(p.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                out.append(obj)
        out.sort(key=lambda d: str(d.get("creationTime", "")), reverse=True)
        return out

    def delete(self, job_id: str) -> bool:
        path = self.path(job_id)
        found = path.exists()
        path.unlink(missing_ok=True)
        files = self.files(job_id)
        if files.is_dir():
            for f in files.iterdir():
                f.unlink(missing_ok=True)
            files.rmdir()
        return found

    def count(self) -> int:
        return len(list(self.dir.glob("*.json"))) if self.dir.exists() else 0


class Runner:
    """Runs jobs one at a time, each in a child process (``command``), from a background
    thread of the worker that accepted them; a child that dies without writing its
    result leaves the job ``Failed``, saying how it ended."""

    def __init__(self, timeout: float = 6 * 3600.0) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.timeout = timeout

    def submit(self, jobs: JobStore, doc: dict[str, Any], command: list[str],
               env: dict[str, str]) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="bandit-eval")
            pool = self._pool
        pool.submit(self._run, jobs, doc, command, env)

    def _run(self, jobs: JobStore, doc: dict[str, Any], command: list[str],
             env: dict[str, str]) -> None:
        try:
            done = subprocess.run(command, env=env, timeout=self.timeout, check=False,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            why = f"the evaluation process exited with code {done.returncode}: " \
                  f"{done.stderr.decode('utf-8', 'replace')[-500:]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = f"the evaluation process did not finish: {exc}"
        current = jobs.load(doc["id"])
        if current is not None and current.get("creationTime") == doc.get("creationTime") \
                and current.get("status") == "Running":
            log.warning("%s %s failed: %s", jobs.kind, doc["id"], why)
            jobs.save({**current, "status": "Failed", "description": why[:1000]})


def finish(jobs: JobStore, doc: dict[str, Any], work: Any) -> None:
    """Run ``work(doc)`` and store its result in the job (``Failed`` with the reason if
    it raises), unless the job was deleted or replaced meanwhile."""
    try:
        result = work(doc)
        doc = {**doc, **result, "status": result.get("status", "Succeeded")}
    except Exception as exc:  # a failed job says why
        log.warning("%s %s failed: %s", jobs.kind, doc["id"], exc)
        doc = {**doc, "status": "Failed", "description": str(exc)[:1000]}
    current = jobs.load(doc["id"])
    if current is None or current.get("creationTime") != doc.get("creationTime"):
        return  # deleted or replaced meanwhile
    try:
        jobs.save(doc)
    except Exception as exc:
        log.exception("%s %s: the result could not be stored", jobs.kind, doc["id"])
        jobs.save({**{k: v for k, v in doc.items() if k not in ("results", "replay")},
                   "status": "Failed", "description": f"result not stored: {exc}"[:1000]})


def new_job(job_id: str | None, request: dict[str, Any], now: str) -> dict[str, Any]:
    return {"id": job_id or str(uuid.uuid4()), "status": "Running", "creationTime": now,
            "evaluationType": "Manual", **request}


# -- Personalizer's shapes -------------------------------------------------------------------
def _summary(s: Any, window: str) -> dict[str, Any]:
    return {"timeStamp": iso(s.start), "ipsEstimatorNumerator": s.wr,
            "ipsEstimatorDenominator": s.n, "snipsEstimatorDenominator": s.w,
            "aggregateTimeWindow": window, "nonZeroProbability": s.nonzero,
            "sumOfSquares": s.wr2, "confidenceInterval": s.half_width,
            "averageReward": s.ips}


def _head(doc: dict[str, Any], v11: bool) -> dict[str, Any]:
    out = {"id": doc["id"], "name": doc["name"], "startTime": iso(doc["start"]),
           "endTime": iso(doc["end"]), "creationTime": doc["creationTime"],
           "status": STATUS.get(doc["status"], ("failed", "Failed"))[0 if v11 else 1]}
    if "evaluationType" in doc:
        out["evaluationType"] = doc["evaluationType"]
    if doc.get("description"):
        out["description"] = doc["description"]
    return out


def evaluation_v11(doc: dict[str, Any]) -> dict[str, Any]:
    """v1.1-preview.3's Evaluation."""
    from bandit.evaluation.evaluation_sums import aggregate

    out = {**_head(doc, True), "jobId": doc["id"], "policyResults": [],
           "featureImportance": doc.get("featureTiers", []),
           "optimalPolicy": doc.get("optimalPolicy", "")}
    out.pop("description", None)
    for r in doc.get("results", []):
        item: dict[str, Any] = {"name": r["name"], "arguments": r["arguments"],
                                "policySource": r["policySource"]}
        total, series = aggregate(r["bins"], doc["start"], doc["end"], 5, False)
        item["summary"] = [_summary(s, "PT5M") for s in series]
        item["totalSummary"] = {**_summary(total, "PT0S"), "timeStamp": iso(doc["end"])}
        out["policyResults"].append(item)
    if not doc.get("results"):  # still running: the policies it compares
        out["policyResults"] = [{"name": p["name"], "arguments": p["arguments"],
                                 "policySource": "Custom"} for p in doc.get("policies", [])]
    return out


def evaluation_2022(doc: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    """2022-09-01-preview's PersonalizerEvaluation, aggregated as ``query`` asks
    (``startTime``, ``endTime``, ``intervalInMinutes``, ``window``)."""
    from bandit.evaluation.evaluation_sums import aggregate

    start = parse_time(query["startTime"], "startTime", "BadRequest") \
        if query.get("startTime") else doc["start"]
    end = parse_time(query["endTime"], "endTime", "BadRequest") \
        if query.get("endTime") else doc["end"]
    raw = query.get("intervalInMinutes")
    minutes = 5
    if raw is not None:
        if not raw.isdigit() or int(raw) not in INTERVALS:
            raise BadRequest("intervalInMinutes must be 5, 60, 360, 720 or 1440",
                             field="intervalInMinutes")
        minutes = int(raw)
    window = query.get("window") or ("Expanding" if minutes == 5 else "Rolling")
    if window not in ("Expanding", "Rolling") or \
            (window == "Expanding") != (minutes == 5):
        raise BadRequest("window must be Expanding (with 5-minute intervals) or Rolling "
                         "(with 60, 360, 720 or 1440)", field="window")
    out = _head(doc, False)
    if doc.get("optimalPolicy"):
        out["optimalPolicy"] = doc["optimalPolicy"]
    if doc.get("results"):
        value = []
        for r in doc["results"]:
            total, series = aggregate(r["bins"], start, end, minutes, window == "Expanding")
            value.append({"name": r["name"], "arguments": r["arguments"],
                          "policySource": r["policySource"],
                          "summary": _reward(total),
                          "timeseries": {"data": [{"timeStamp": iso(s.start), **_reward(s)}
                                                  for s in series]}})
        out["content"] = {"startTime": iso(start), "endTime": iso(end),
                          "intervalInMinutes": minutes, "value": value}
    return out


def _reward(s: Any) -> dict[str, Any]:
    h = s.half_width
    v = s.ips
    return {"expectedReward": v, "confidenceInterval": [v - h, v + h]}


def listed_2022(doc: dict[str, Any]) -> dict[str, Any]:
    out = _head(doc, False)
    out.pop("description", None)
    return out


def feature_importance_json(doc: dict[str, Any]) -> dict[str, Any]:
    out = _head(doc, False)
    out.pop("evaluationType", None)
    out["featureScores"] = doc.get("featureScores", [])
    return out


def page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """``{"value": [...]}`` of ``top`` items from ``skip`` (2022-09-01-preview lists)."""
    def number(name: str, default: int) -> int:
        raw = query.get(name)
        if raw is None:
            return default
        if not raw.isdigit():
            raise BadRequest(f"{name} must be a non-negative integer", field=name)
        return int(raw)

    skip, top = number("skip", 0), number("top", 2**31 - 1)
    return {"value": items[skip:skip + top]}


def best_policy(results: list[dict[str, Any]]) -> str:
    """The learning settings with the highest IPS estimate (ties: the online one)."""
    from bandit.evaluation.evaluation_sums import Sums

    best, value = "", -math.inf
    for r in results:
        if r["policySource"] in ("Baseline", "Random"):
            continue
        total = Sums(0.0)
        for b in r["bins"]:
            total = total.add(b)
        if total.ips > value + 1e-12:
            best, value = r["name"], total.ips
    return best
