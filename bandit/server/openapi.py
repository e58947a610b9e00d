"""The OpenAPI 3 document served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from bandit import __version__
from bandit.server import openapi_personalizer
from bandit.server.personalizer import BASES

_FEATURES = {
    "type": "object",
    "description": "Namespaces: {namespace: {feature: value}}. Strings are categorical, "
                   "numbers numeric, lists of strings bags, lists of numbers dense vectors; "
                   "top-level scalars go to the default namespace.",
    "additionalProperties": True,
}
_FEATURE_LIST = {"type": "array", "items": {"type": "object", "additionalProperties": True}}
_ID = {"type": "string", "minLength": 1, "maxLength": 256}
_RANKED = {"type": "object", "required": ["id", "probability"],
           "properties": {"id": {"type": ["string", "null"],
                                 "description": "null: show nothing (allow_none, holdout)"},
                          "probability": {"type": "number", "minimum": 0, "maximum": 1}}}


_TIME = {"type": ["string", "number"], "description": "ISO-8601 with a time zone, or "
                                                     "UNIX seconds"}
_MONEY = {"type": "number", "minimum": 0}
_NAME = {"type": "string", "minLength": 1, "maxLength": 256}
_TEXT = {"type": "string", "maxLength": 4096}
_CATALOGUE: dict[str, Any] = {
    "OfferEntry": {"type": "object", "description": "A catalogue entry (unknown fields "
                   "are refused; end after start)", "properties": {
        "id": _ID, "features": _FEATURES, "title": _TEXT, "description": _TEXT,
        "payout": _MONEY, "cost": _MONEY, "price": _MONEY, "advertiser": _NAME,
        "category": _NAME, "start": _TIME, "end": _TIME}},
    "StoredOffer": {"type": "object", "required": ["id", "features", "payout", "cost",
                                                   "price", "updated"], "properties": {
        "id": {"type": "string"}, "features": {"type": "object"},
        "title": {"type": "string"}, "description": {"type": "string"},
        "payout": {"type": "number"}, "cost": {"type": "number"},
        "price": {"type": "number"}, "advertiser": {"type": ["string", "null"]},
        "category": {"type": ["string", "null"]}, "start": {"type": ["string", "null"]},
        "end": {"type": ["string", "null"]}, "updated": {"type": ["string", "null"]}}},
    "OfferList": {"type": "object", "required": ["revision", "offers"], "properties": {
        "revision": {"type": "integer"},
        "offers": {"type": "array", "items": {"$ref": "#/components/schemas/StoredOffer"}}}},
    "Deleted": {"type": "object", "required": ["id", "deleted"],
                "properties": {"id": {"type": "string"}, "deleted": {"type": "boolean"}}},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ref("Error"), "Invalid request: the message names the field"),
    "401": _json(_ref("Error"), "No valid API key"),
    "403": _json(_ref("Error"), "The key lacks the route's scope"),
    "404": _json(_ref("Error"), "No such model version"),
    "408": _json(_ref("Error"), "The request body did not arrive in time"),
    "409": _json(_ref("Error"), "Not possible in this configuration"),
    "413": _json(_ref("Error"), "Request body too large"),
    "422": _json(_ref("Error"), "Every eligible offer is capped"),
    "429": _json(_ref("Error"), "Rate limit exceeded (see Retry-After)"),
    "503": _json(_ref("Error"), "The event could not be recorded; retry"),
}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                       "field": {"type": "string"}}}}},
    "Offer": {"type": "object", "required": ["id"],
              "properties": {"id": _ID, "features": _FEATURES}},
    "DecideRequest": {"type": "object", "required": ["offers"], "properties": {
        "context": _FEATURES,
        "offers": {"type": "array", "minItems": 1, "maxItems": 50, "items": {"anyOf": [
            _ref("Offer"), {**_ID, "description": "an offer of the catalogue, by id "
                                                  "(PUT /v1/offers/{offer_id})"}]}},
        "slots": {"type": "integer", "minimum": 1, "maximum": 3, "default": 1},
        "exclude": {"type": "array", "items": {"type": "string"}},
        "user_id": _ID,
        "explore": {"type": "boolean", "default": True},
        "event_id": _ID,
        "defer": {"type": "boolean", "default": False},
        "explain": {"type": "boolean", "default": False},
        "allow_none": {"type": "boolean", "default": False,
                       "description": "showing nothing (id null) may be chosen"},
        "predict": {"type": "boolean", "default": False,
                    "description": "reply with each offer's calibrated prediction by every "
                                   "head (value-aware ranking: BANDIT_OBJECTIVE)"}}},
    "DecideResponse": {"type": "object",
                       "required": ["event_id", "ranking", "slots", "model_version", "policy"],
                       "properties": {"event_id": {"type": "string"},
                                      "ranking": {"type": "array", "items": _RANKED},
                                      "slots": {"type": "array", "items": _RANKED},
                                      "model_version": {"type": "string"},
                                      "policy": {"type": "string"},
                                      "predictions": {
                                          "type": "object", "description":
                                          "{offer id: {head: calibrated prediction}}",
                                          "additionalProperties": {
                                              "type": "object", "additionalProperties":
                                              {"type": "number"}}}}},
    "RewardRequest": {"type": "object", "required": ["reward"], "description":
                      "Names the decision by event_id, or (a long-horizon reward such as a "
                      "return visit) the user by user_id; one of the two is required.",
                      "properties": {
        "event_id": _ID, "user_id": _ID,
        "reward": {"type": "number", "minimum": -1, "maximum": 1,
                   "description": "within [BANDIT_REWARD_MIN, BANDIT_REWARD_MAX], "
                                  "default [-1, 1]"},
        "slot": {"type": "integer", "minimum": 1, "maximum": 3},
        "kind": {"type": "string", "minLength": 1, "maxLength": 64}}},
    "Accepted": {"type": "object", "required": ["event_id", "status"],
                 "properties": {"event_id": {"type": ["string", "null"]},
                                "status": {"type": "string"}}},
    "ModelInfo": {"type": "object", "required": ["version", "policy", "events_learned"],
                  "properties": {"version": {"type": "string"},
                                 "checksum": {"type": ["string", "null"]},
                                 "policy": {"type": "string"},
                                 "events_learned": {"type": "integer"},
                                 "created_at": {"type": ["string", "null"]}}},
    "RankRequest": {"type": "object", "required": ["actions"], "properties": {
        "contextFeatures": _FEATURE_LIST,
        "actions": {"type": "array", "minItems": 1, "maxItems": 50, "items": {
            "type": "object", "required": ["id"],
            "properties": {"id": _ID, "features": _FEATURE_LIST}}},
        "excludedActions": {"type": "array", "items": {"type": "string"}},
        "eventId": _ID,
        "deferActivation": {"type": "boolean", "default": False}}},
    "RankResponse": {"type": "object", "required": ["ranking", "eventId", "rewardActionId"],
                     "properties": {"ranking": {"type": "array", "items": _RANKED},
                                    "eventId": {"type": "string"},
                                    "rewardActionId": {"type": "string"}}},
    "RewardValue": {"type": "object", "required": ["value"],
                    "properties": {"value": {"type": "number", "minimum": -1, "maximum": 1}}},
    **_CATALOGUE,
    "ObjectiveRequest": {"type": "object", "required": ["objective"], "properties": {
        "objective": {"type": "string", "minLength": 1, "maxLength": 1000,
                      "description": "e.g. click + 5 * conversion * payout: heads "
                                     "(BANDIT_HEADS), numeric offer fields, numbers, "
                                     "+ - * / and parentheses"}}},
    "Objective": {"type": "object", "required": ["objective"],
                  "properties": {"objective": {"type": "string"}}},
    "PinRequest": {"type": "object", "required": ["version"],
                   "properties": {"version": _ID}},
    "MultiSlotRankRequest": {"type": "object", "required": ["actions", "slots"], "properties": {
        "contextFeatures": _FEATURE_LIST,
        "actions": {"type": "array", "minItems": 1, "maxItems": 50, "items": {
            "type": "object", "required": ["id"],
            "properties": {"id": _ID, "features": _FEATURE_LIST}}},
        "slots": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
            "type": "object", "required": ["id"],
            "properties": {"id": _ID, "features": _FEATURE_LIST,
                           "excludedActions": {"type": "array", "items": {"type": "string"}},
                           "baselineAction": {"type": "string"}}}},
        "eventId": _ID,
        "deferActivation": {"type": "boolean", "default": False}}},
    "MultiSlotRankResponse": {"type": "object", "required": ["slots", "eventId"], "properties": {
        "slots": {"type": "array", "items": {
            "type": "object", "required": ["id", "rewardActionId"],
            "properties": {"id": {"type": "string"},
                           "rewardActionId": {"type": ["string", "null"]}}}},
        "eventId": {"type": "string"}}},
    "MultiSlotReward": {"type": "object", "required": ["reward"], "properties": {
        "reward": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["slotId", "value"],
            "properties": {"slotId": _ID,
                           "value": {"type": "number", "minimum": -1, "maximum": 1}}}}}},
}


def _post(summary: str, body: str | None, ok: str, ok_schema: str | None,
          params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": dict(_ERRORS)}
    if body:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": _ref(body)}}}
    op["responses"][ok] = (_json(_ref(ok_schema), "Success") if ok_schema
                           else {"description": "Success"})
    if params:
        op["parameters"] = params
    return {"post": op}


def _path_param(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": _ID}]


REQUESTS = ("DecideRequest", "Offer", "RewardRequest", "RankRequest",
            "MultiSlotRankRequest", "RewardValue", "MultiSlotReward", "OfferEntry")


def _nullable_optionals(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` where every optional property (at any depth) may be null."""
    out = dict(schema)
    if "items" in out and isinstance(out["items"], dict):
        out["items"] = _nullable_optionals(out["items"])
    props = out.get("properties")
    if isinstance(props, dict):
        required = set(out.get("required", ()))
        new = {}
        for prop, sub in props.items():
            sub = _nullable_optionals(sub) if isinstance(sub, dict) else sub
            if prop not in required and not (isinstance(sub, dict) and "anyOf" in sub):
                sub = {"anyOf": [sub, {"type": "null"}]}
            new[prop] = sub
        out["properties"] = new
    return out


def _allow_null(schemas: dict[str, Any], names: tuple[str, ...]) -> None:
    """The service treats ``null`` like an absent optional field: say so."""
    for name in names:
        schemas[name] = _nullable_optionals(schemas[name])


_allow_null(SCHEMAS, REQUESTS)
_allow_null(openapi_personalizer.SCHEMAS, openapi_personalizer.REQUESTS)


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/decide": _post("Rank offers and choose the shown ones", "DecideRequest", "200",
                            "DecideResponse"),
        "/v1/rewards": _post("Report a reward for a decision (unknown event ids are accepted; "
                             "the learner drops them)", "RewardRequest", "202", "Accepted"),
        "/v1/events/{event_id}/activate": _post("Activate a deferred decision", None, "202",
                                                "Accepted", _path_param("event_id")),
        "/v1/admin/pin": _post("Serve a stored model version (rollback; admin scope)",
                               "PinRequest", "200", None),
        "/v1/admin/unpin": _post("Serve what the learner publishes again (admin scope)",
                                 None, "200", None),
        "/v1/admin/arm-guard/reset": _post("Let the model arm serve its own policy again "
                                           "(admin scope)", None, "200", None),
        "/v1/admin/objective": _objective_paths(),
        "/v1/offers": {"get": {"summary": "Every catalogue entry (admin scope)",
                               "responses": {**_ERRORS,
                                             "200": _json(_ref("OfferList"), "Entries")}}},
        "/v1/offers/{offer_id}": _offer_paths(),
        "/v1/model": {"get": {"summary": "The model being served",
                              "responses": {"200": _json(_ref("ModelInfo"), "Model")}}},
        "/": {"get": {"summary": "Live status page (HTML)",
                      "responses": {"200": {"description": "status page",
                                            "content": {"text/html": {}}}}}},
        "/healthz": {"get": {"summary": "Process alive",
                             "responses": {"200": {"description": "alive"}}}},
        "/readyz": {"get": {"summary": "Model loaded and event sink ready",
                            "responses": {"200": {"description": "ready"},
                                          "503": {"description": "not ready"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text exposition"}}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    }
    for base in BASES:
        _personalizer_events(paths, base)
    tails = {p[len(BASES[0]):]: item for p, item in paths.items() if p.startswith(BASES[0])}
    paths.update(openapi_personalizer.paths(_ERRORS, tails))
    return {
        "openapi": "3.1.0",
        "info": {"title": "offer-bandit", "version": __version__},
        "paths": paths,
        "components": {"schemas": {**SCHEMAS, **openapi_personalizer.SCHEMAS}},
    }


def _op(summary: str, ok: dict[str, Any], body: str | None = None,
        params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**_ERRORS, **ok}}
    if body:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        op["parameters"] = params
    return op


def _offer_paths() -> dict[str, Any]:
    """The catalogue entry routes (admin scope)."""
    param = _path_param("offer_id")
    stored = _json(_ref("StoredOffer"), "The entry")
    return {
        "put": _op("Create or replace a catalogue entry (admin scope)",
                   {"200": stored, "201": _json(_ref("StoredOffer"), "Created")},
                   "OfferEntry", param),
        "get": _op("A catalogue entry (admin scope)", {"200": stored}, None, param),
        "delete": _op("Remove a catalogue entry (admin scope)",
                      {"200": _json(_ref("Deleted"), "Removed")}, None, param),
    }


def _objective_paths() -> dict[str, Any]:
    """The live objective of value-aware ranking (admin scope)."""
    ok = {"200": _json(_ref("Objective"), "The objective")}
    return {"get": _op("The objective decisions are ranked by (admin scope)", ok),
            "put": _op("Rank by another objective on every worker from its next model "
                       "poll, without relearning (admin scope)", ok, "ObjectiveRequest")}


def _personalizer_events(paths: dict[str, Any], base: str) -> None:
    """Personalizer's events routes under a path-versioned ``base``."""
    paths[f"{base}/rank"] = _post("Personalizer Rank", "RankRequest", "201", "RankResponse")
    paths[f"{base}/events/{{eventId}}/reward"] = _post(
        "Personalizer Reward", "RewardValue", "204", None, _path_param("eventId"))
    paths[f"{base}/events/{{eventId}}/activate"] = _post(
        "Personalizer Activate", None, "204", None, _path_param("eventId"))
    paths[f"{base}/multislot/rank"] = _post("Personalizer multi-slot Rank",
                                            "MultiSlotRankRequest", "201",
                                            "MultiSlotRankResponse")
    paths[f"{base}/multislot/events/{{eventId}}/reward"] = _post(
        "Personalizer multi-slot Reward", "MultiSlotReward", "204", None,
        _path_param("eventId"))
    paths[f"{base}/multislot/events/{{eventId}}/activate"] = _post(
        "Personalizer multi-slot Activate", None, "204", None, _path_param("eventId"))
