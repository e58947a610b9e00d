"""The OpenAPI paths and schemas of Personalizer's newest generation
(``/personalizer/…?api-version=2022-09-01-preview``) and of the configuration, model and
logs routes of every generation (merged into :mod:`bandit.server.openapi`)."""

from __future__ import annotations

from typing import Any

from bandit.server.personalizer import API_VERSIONS, BASES, QUERY_BASE

_DURATION = {"type": "string", "maxLength": 64,
             "description": "ISO-8601 (PT10M) or TimeSpan (00:10:00)"}

SCHEMAS: dict[str, Any] = {
    "ServiceConfiguration": {"type": "object", "required": [
        "rewardWaitTime", "defaultReward", "rewardAggregation", "explorationPercentage",
        "modelExportFrequency", "logRetentionDays"], "properties": {
        "rewardWaitTime": _DURATION,
        "defaultReward": {"type": "number", "minimum": -1, "maximum": 1},
        "rewardAggregation": {"type": "string", "enum": ["earliest", "sum", "max", "last"]},
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
}
REQUESTS = ("ServiceConfiguration", "PolicyContract")

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


def paths(errors: dict[str, Any], event_ops: dict[str, Any]) -> dict[str, Any]:
    """Every path this module documents; ``event_ops``: the rank/reward/activate paths of
    the path-versioned generations, keyed by their path after the base (reused, with
    ``api-version``, for the newest generation)."""
    out: dict[str, Any] = {}
    for base in (*BASES, QUERY_BASE):
        out.update(admin_paths(base, errors))
    for tail, item in event_ops.items():
        new = {}
        for method, op in item.items():
            new[method] = {**op, "parameters": [*op.get("parameters", []), _API_VERSION]}
        out[QUERY_BASE + tail] = new
    return out
