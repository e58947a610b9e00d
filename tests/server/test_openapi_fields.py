"""The OpenAPI document against the request parser, field by field.

Each parsing method of :class:`bandit.core.schema.RequestParser` reads a body through
objects that record every key asked for (``get``, ``[]``, ``in``); the keys a method
reads, at every depth the document describes, must be the properties of that
request's schema in ``/openapi.json``, and the reverse. A field added to the parser
and not to the document (or documented and never read) fails here.
"""

from __future__ import annotations

import inspect
from typing import Any

import orjson
import pytest

from bandit.config.settings import Settings
from bandit.core import schema
from bandit.core.schema import RequestParser
from bandit.server.openapi import openapi_document

DOC = openapi_document()
_OFFER = {"id": "a", "features": {"color": "red"}}
_ACTION = {"id": "a", "features": [{"color": "red"}]}

# parser method -> (its request schema, arguments before the body, a body using every
# list the schema has, so that the parser reads inside each of them)
CASES: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "decide": ("DecideRequest", (), {
        "context": {"u": {"x": 1}}, "offers": [_OFFER, {"id": "b"}], "slots": 1,
        "exclude": ["b"], "user_id": "u1", "explore": True, "event_id": "e1",
        "defer": False, "explain": False, "allow_none": False}),
    "reward": ("RewardRequest", (), {"event_id": "e1", "reward": 1.0, "slot": 1,
                                      "kind": "click", "user_id": "u1"}),
    "personalizer_rank": ("RankRequest", (), {
        "contextFeatures": [{"u": 1}], "actions": [_ACTION, {"id": "b"}],
        "excludedActions": ["b"], "eventId": "e1", "deferActivation": False}),
    "personalizer_multislot_rank": ("MultiSlotRankRequest", (), {
        "contextFeatures": [{"u": 1}], "actions": [_ACTION, {"id": "b"}],
        "slots": [{"id": "s1", "features": [{"k": 1}], "excludedActions": ["b"],
                   "baselineAction": "a"}],
        "eventId": "e1", "deferActivation": False}),
    "personalizer_multislot_reward": ("MultiSlotReward", ("e1",),
                                      {"reward": [{"slotId": "s1", "value": 1.0}]}),
    "personalizer_reward": ("RewardValue", ("e1",), {"value": 1.0}),
}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """A schema node without its ``$ref`` and its ``anyOf [x, null]`` (optional fields
    may be null)."""
    while True:
        if "$ref" in node:
            node = DOC["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
        elif "anyOf" in node:
            node = next(n for n in node["anyOf"] if n.get("type") != "null")
        else:
            return node


class _Recorded(dict[str, Any]):
    """A JSON object of the body that records the keys read, under its path."""

    def __init__(self, data: dict[str, Any], path: str, seen: set[str]) -> None:
        super().__init__(data)
        self._path, self._seen = path, seen

    def _read(self, key: object) -> None:
        self._seen.add(f"{self._path}{key}")

    def get(self, key: str, default: Any = None) -> Any:
        self._read(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self._read(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._read(key)
        return super().__contains__(key)


def _wrap(value: Any, node: dict[str, Any], path: str, seen: set[str]) -> Any:
    """``value`` with every object the schema describes by its properties recording."""
    node = _resolve(node)
    if isinstance(value, list) and "items" in node:
        return [_wrap(v, node["items"], f"{path}[].", seen) for v in value]
    if isinstance(value, dict) and "properties" in node:
        props = node["properties"]
        return _Recorded({k: _wrap(v, props.get(k, {}), f"{path}{k}.", seen)
                          for k, v in value.items()}, path, seen)
    return value


def _documented(node: dict[str, Any], path: str = "") -> set[str]:
    """Every property path the schema describes (``offers[].id``)."""
    node = _resolve(node)
    out: set[str] = set()
    if "items" in node:
        out |= _documented(node["items"], f"{path}[].")
    for key, sub in node.get("properties", {}).items():
        out.add(f"{path}{key}")
        out |= _documented(sub, f"{path}{key}.")
    return out


def _read_by(method: str, args: tuple[str, ...], body: dict[str, Any],
             monkeypatch: pytest.MonkeyPatch) -> set[str]:
    seen: set[str] = set()
    request_schema = {"$ref": f"#/components/schemas/{CASES[method][0]}"}

    class RecordingJson:  # the parser's orjson, whose decoded objects record their reads
        JSONDecodeError = orjson.JSONDecodeError
        dumps = staticmethod(orjson.dumps)

        @staticmethod
        def loads(raw: bytes) -> Any:
            return _wrap(orjson.loads(raw), request_schema, "", seen)

    monkeypatch.setattr(schema, "orjson", RecordingJson)
    getattr(RequestParser(Settings()), method)(*args, orjson.dumps(body))
    return seen


def test_every_parsing_method_has_a_case():
    bodies = {name for name, fn in inspect.getmembers(RequestParser, inspect.isfunction)
              if not name.startswith("_") and "body" in inspect.signature(fn).parameters}
    assert bodies == set(CASES)


@pytest.mark.parametrize("method", sorted(CASES))
def test_the_parser_reads_exactly_the_documented_fields(method, monkeypatch):
    name, args, body = CASES[method]
    read = _read_by(method, args, body, monkeypatch)
    documented = _documented(DOC["components"]["schemas"][name])
    assert read - documented == set(), f"{method} reads fields {name} does not document"
    assert documented - read == set(), f"{name} documents fields {method} never reads"
