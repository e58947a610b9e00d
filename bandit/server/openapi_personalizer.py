"""The OpenAPI paths and schemas of Personalizer's newest generation
(``/personalizer/…?api-version=2022-09-01-preview``) and of the configuration, model, logs
and evaluation routes of every generation (merged into :mod:`bandit.server.openapi`)."""

from __future__ import annotations

from typing import Any

from bandit.evaluation.evaluations import STATUS
from bandit.server.personalizer import API_VERSIONS, BASES, QUERY_BASE

_DURATION = {"type": "string", "maxLength": 64,
             "description": "ISO-8601 (PT10M) or TimeSpan (00:10:00)"}

_NAME = {"type": "string", "minLength": 1, "maxLength": 256}
_TIME = {"type": "string", "format": "date-time"}
_NUM = {"type": "number"}
_SOURCE = {"type": "string",
           "enum": ["Online", "Baseline", "Random", "Custom", "OfflineExperimentation"]}
_STATUS_2022 = {"type": "string", "enum": [v[1] for v in STATUS.values()]}
_REWARD: dict[str, Any] = {"type": "object", "properties": {
    "expectedReward": _NUM, "confidenceInterval": {"type": "array", "items": _NUM}}}

SCHEMAS: dict[str, Any] = {
    "ServiceConfiguration": {"type": "object", "required": [
        "rewardWaitTime", "defaultReward", "rewardAggregation", "explorationPercentage",
        "modelExportFrequency", "logRetentionDays"], "properties": {
        "rewardWaitTime": _DURATION,
        "defaultReward": {"type": "number", "minimum": -1, "maximum": 1},
        "rewardAggregation": {"type": "string",
                              "enum": ["earliest", "sum", "max", "last", "average"]},
        "explorationPercentage": {"type": "number", "minimum": 0, "maximum": 1},
        "modelExportFrequency": _DURATION,
        "logRetentionDays": {"type": "integer", "minimum": -1},
        "learningMode": {"type": "string", "enum": ["Online", "Apprentice", "LoggingOnly"]},
        "modelRetrainDays": {"type": "integer", "minimum": 0},
        "lastConfigurationEditDate": {"type": "string"},
        "logMirrorEnabled": {"type": "boolean"},
        "logMirrorSasUri": {"type": "string", "maxLength": 2048},
        "isAutoOptimizationEnabled": {"type": "boolean"},
        "autoOptimizationFrequency": _DURATION,
        "autoOptimizationStartDate": {"type": "string", "maxLength": 64}}},
    "PolicyContract": {"type": "object", "required": ["name", "arguments"], "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "arguments": {"type": "string", "maxLength": 1024}}},
    "ModelProperties": {"type": "object", "required": ["creationTime", "lastModifiedTime"],
                        "properties": {"creationTime": {"type": "string"},
                                       "lastModifiedTime": {"type": "string"}}},
    "LogsProperties": {"type": "object", "required": ["dateRange"], "properties": {
        "dateRange": {"type": "object", "required": ["from", "to"],
                      "properties": {"from": {"type": "string"}, "to": {"type": "string"}}}}},
    "PolicyReferenceContract": {"type": "object", "required": ["evaluationId", "policyName"],
                                "properties": {"evaluationId": _NAME, "policyName": _NAME}},
    "EvaluationContract": {"type": "object", "required": ["name", "startTime", "endTime"],
                           "properties": {
        "name": _NAME, "startTime": _TIME, "endTime": _TIME,
        "enableOfflineExperimentation": {"type": "boolean"},
        "enablePolicyOptimization": {"type": "boolean"},
        "policies": {"type": "array", "maxItems": 10,
                     "items": {"$ref": "#/components/schemas/PolicyContract"}}}},
    "PolicyResultSummary": {"type": "object", "properties": {
        "timeStamp": _TIME, "ipsEstimatorNumerator": _NUM, "ipsEstimatorDenominator": _NUM,
        "snipsEstimatorDenominator": _NUM, "aggregateTimeWindow": {"type": "string"},
        "nonZeroProbability": _NUM, "sumOfSquares": _NUM, "confidenceInterval": _NUM,
        "averageReward": _NUM}},
    "PolicyResult": {"type": "object", "required": ["name", "arguments", "policySource"],
                     "properties": {
        "name": {"type": "string"}, "arguments": {"type": "string"}, "policySource": _SOURCE,
        "summary": {"type": "array",
                    "items": {"$ref": "#/components/schemas/PolicyResultSummary"}},
        "totalSummary": {"$ref": "#/components/schemas/PolicyResultSummary"}}},
    "Evaluation": {"type": "object", "required": ["id", "name", "status"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "startTime": _TIME,
        "endTime": _TIME, "jobId": {"type": "string"}, "creationTime": _TIME,
        "status": {"type": "string", "enum": [v[0] for v in STATUS.values()]},
        "policyResults": {"type": "array", "items": {"$ref": "#/components/schemas/PolicyResult"}},
        "featureImportance": {"type": "array",
                              "items": {"type": "array", "items": {"type": "string"}}},
        "evaluationType": {"type": "string", "enum": ["Manual", "Auto"]},
        "optimalPolicy": {"type": "string"}}},
    "EvaluationList": {"type": "array", "items": {"$ref": "#/components/schemas/Evaluation"}},
    "PersonalizerEvaluation": {"type": "object", "required": ["id", "name", "status"],
                               "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "startTime": _TIME,
        "endTime": _TIME, "creationTime": _TIME, "status": _STATUS_2022,
        "evaluationType": {"type": "string", "enum": ["Manual", "Auto"]},
        "description": {"type": "string"}, "optimalPolicy": {"type": "string"},
        "content": {"type": "object", "properties": {
            "startTime": _TIME, "endTime": _TIME, "intervalInMinutes": {"type": "integer"},
            "value": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "arguments": {"type": "string"},
                "policySource": _SOURCE, "slotId": {"type": "string"},
                "summary": _REWARD,
                "timeseries": {"type": "object", "properties": {"data": {
                    "type": "array", "items": {"type": "object", "properties": {
                        "timeStamp": _TIME, **_REWARD["properties"]}}}}}}}}}}}},
    "PersonalizerEvaluationList": {"type": "object", "required": ["value"], "properties": {
        "value": {"type": "array", "items": {"$ref":
                                             "#/components/schemas/PersonalizerEvaluation"}},
        "nextLink": {"type": "string"}}},
    "FeatureImportanceContract": {"type": "object", "required": ["name", "startTime",
                                                                  "endTime"],
                                  "properties": {"name": _NAME, "startTime": _TIME,
                                                 "endTime": _TIME}},
    "FeatureImportance": {"type": "object", "required": ["id", "name", "status"],
                          "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "startTime": _TIME,
        "endTime": _TIME, "creationTime": _TIME, "status": _STATUS_2022,
        "description": {"type": "string"},
        "featureScores": {"type": "array", "items": {"type": "object", "properties": {
            "namespace": {"type": "string"}, "featureName": {"type": "string"},
            "score": {"type": "number", "minimum": 0, "maximum": 1}}}}}},
    "FeatureImportanceList": {"type": "object", "required": ["value"], "properties": {
        "value": {"type": "array", "items": {"$ref": "#/components/schemas/FeatureImportance"}},
        "nextLink": {"type": "string"}}},
}
REQUESTS = ("ServiceConfiguration", "PolicyContract", "EvaluationContract",
            "FeatureImportanceContract")

_API_VERSION = {"name": "api-version", "in": "query", "required": True,
                "schema": {"type": "string", "enum": list(API_VERSIONS)}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(summary: str, errors: dict[str, Any], ok: str, ok_schema: str | None = None,
        body: str | None = None, *, media: str = "application/json",
        params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    responses = dict(errors)
    if ok_schema == "binary":
        responses[ok] = {"description": "Success", "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    elif ok_schema:
        responses[ok] = {"description": "Success",
                         "content": {"application/json": {"schema": _ref(ok_schema)}}}
    else:
        responses[ok] = {"description": "Success"}
    op: dict[str, Any] = {"summary": summary + " (admin scope)", "responses": responses}
    if body == "binary":
        op["requestBody"] = {"required": True, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    elif body:
        op["requestBody"] = {"required": True, "content": {media: {"schema": _ref(body)}}}
    if params:
        op["parameters"] = params
    return op


def admin_paths(base: str, errors: dict[str, Any]) -> dict[str, Any]:
    """The configuration, model and logs routes under ``base``."""
    params = [_API_VERSION] if base == QUERY_BASE else None
    signed = [*(params or []), {"name": "signed", "in": "query", "required": False,
                                "schema": {"type": "boolean", "default": False}}]
    return {
        f"{base}/configurations/service": {
            "get": _op("Service configuration", errors, "200", "ServiceConfiguration",
                       params=params),
            "put": _op("Update the service configuration", errors, "200",
                       "ServiceConfiguration", "ServiceConfiguration", params=params)},
        f"{base}/configurations/policy": {
            "get": _op("Learning settings", errors, "200", "PolicyContract", params=params),
            "put": _op("Update the learning settings (a fresh model is served)", errors,
                       "200", "PolicyContract", "PolicyContract", params=params),
            "delete": _op("Reset the learning settings", errors, "200", "PolicyContract",
                          params=params)},
        f"{base}/model": {
            "get": _op("Export the served model (signed: a zip with its sha256)", errors,
                       "200", "binary", params=signed),
            "put": _op("Import a model (checksum-verified)", errors, "204", None, "binary",
                       params=params),
            "delete": _op("Reset the model", errors, "204", params=params)},
        f"{base}/model/properties": {
            "get": _op("Model properties", errors, "200", "ModelProperties", params=params)},
        f"{base}/logs/properties": {
            "get": _op("Date range of the joined logs", errors, "200", "LogsProperties",
                       params=params)},
        f"{base}/logs": {"delete": _op("Delete the logs (events before now are no longer "
                                       "used)", errors, "204", params=params)},
    }


def evaluation_paths(base: str, errors: dict[str, Any]) -> dict[str, Any]:
    """The evaluation, feature importance and applyFromEvaluation routes under ``base``."""
    iso = base == QUERY_BASE
    params = [_API_VERSION] if iso else []
    eid = {"name": "evaluationId", "in": "path", "required": True,
           "schema": {"type": "string", "minLength": 1, "maxLength": 256}}
    paging = [{"name": n, "in": "query", "required": False,
               "schema": {"type": "integer", "minimum": 0}} for n in ("top", "skip")]
    window = [{"name": "startTime", "in": "query", "required": False, "schema": _TIME},
              {"name": "endTime", "in": "query", "required": False, "schema": _TIME},
              {"name": "intervalInMinutes", "in": "query", "required": False,
               "schema": {"type": "integer", "enum": [5, 60, 360, 720, 1440]}},
              {"name": "window", "in": "query", "required": False,
               "schema": {"type": "string", "enum": ["Expanding", "Rolling"]}}]
    out: dict[str, Any] = {
        f"{base}/configurations/applyFromEvaluation": {"post": _op(
            "Serve an evaluated policy's learning settings and the model it learned",
            errors, "204", None, "PolicyReferenceContract", params=params or None)},
        f"{base}/evaluations/{{evaluationId}}": {
            "get": _op("An offline evaluation and its results", errors, "200",
                       "PersonalizerEvaluation" if iso else "Evaluation",
                       params=[*params, eid, *(window if iso else [])]),
            "delete": _op("Delete an offline evaluation", errors, "204",
                          params=[*params, eid])},
    }
    if iso:
        fid = {**eid, "name": "featureImportanceId"}
        out[f"{base}/evaluations"] = {"get": _op(
            "Offline evaluations", errors, "200", "PersonalizerEvaluationList",
            params=[*params, *paging])}
        out[f"{base}/evaluations/{{evaluationId}}"]["put"] = _op(
            "Run an offline evaluation on the joined logs (in the background)", errors, "200",
            None, "EvaluationContract", params=[*params, eid])
        out[f"{base}/featureImportances"] = {"get": _op(
            "Feature importance evaluations", errors, "200", "FeatureImportanceList",
            params=[*params, *paging])}
        out[f"{base}/featureImportances/{{featureImportanceId}}"] = {
            "get": _op("A feature importance evaluation", errors, "200", "FeatureImportance",
                       params=[*params, fid]),
            "put": _op("Run a feature importance evaluation (in the background)", errors,
                       "200", None, "FeatureImportanceContract", params=[*params, fid]),
            "delete": _op("Delete a feature importance evaluation", errors, "204",
                          params=[*params, fid])}
    else:
        out[f"{base}/evaluations"] = {
            "get": _op("Offline evaluations", errors, "200", "EvaluationList"),
            "post": _op("Run an offline evaluation on the joined logs (in the background)",
                        errors, "201", "Evaluation", "EvaluationContract")}
    return out


def report_path(errors: dict[str, Any]) -> dict[str, Any]:
    return {"/v1/admin/evaluations/{evaluationId}/report": {"get": {
        "summary": "An offline evaluation's replay report (HTML; admin scope)",
        "parameters": [{"name": "evaluationId", "in": "path", "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 256}}],
        "responses": {**errors, "200": {"description": "report",
                                        "content": {"text/html": {}}}}}}}


def paths(errors: dict[str, Any], event_ops: dict[str, Any]) -> dict[str, Any]:
    """Every path this module documents; ``event_ops``: the rank/reward/activate paths of
    the path-versioned generations, keyed by their path after the base (reused, with
    ``api-version``, for the newest generation)."""
    out: dict[str, Any] = report_path(errors)
    for base in (*BASES, QUERY_BASE):
        out.update(admin_paths(base, errors))
        out.update(evaluation_paths(base, errors))
    for tail, item in event_ops.items():
        new = {}
        for method, op in item.items():
            new[method] = {**op, "parameters": [*op.get("parameters", []), _API_VERSION]}
        out[QUERY_BASE + tail] = new
    return out
