"""A decision's bytes: built as a dict and encoded (the plain pair), or written
straight from the request (the server's fast twin), with ``c`` last and its offset
given beside the message (``c_at``), so a reader can split off the small head."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import orjson

from bandit.core.types import DecideRequest, Decision

C_AT = "c_at"  # the Kafka header (and spool field) giving the offset of ``,"c":``

_second: list[Any] = [-1, ""]  # the last whole second and its ISO-8601 text


def utc_now() -> str:
    """Now as ISO-8601 UTC with milliseconds (``2026-01-01T00:00:00.000Z``); the text
    of the current second is formatted once per second."""
    t = time.time()
    sec = int(t)
    cached = _second
    if cached[0] != sec:
        cached[1] = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        cached[0] = sec
    return f"{cached[1]}.{min(999, int((t - sec) * 1000)):03d}Z"


def decision_event(request: DecideRequest, decision: Decision,
                   timestamp: str | None = None, **extra: Any) -> dict[str, Any]:
    """The DSJSON object logged for a decision (probabilities are the shown ones)."""
    event: dict[str, Any] = {
        "EventId": request.event_id,
        "Timestamp": timestamp or utc_now(),
        "Version": "1",
        "a": [i + 1 for i in decision.order],
        "p": list(decision.probabilities),
        "c": {**request.context, "_multi": [o.features for o in request.offers]},
        "VWState": {"m": decision.model_version},
        "ids": [o.id for o in request.offers],
        "slots": decision.slots,
        "policy": decision.policy,
        "explore": request.explore,
        "DeferredAction": request.defer,
    }
    _add_optional(event, request, decision)
    event.update(extra)
    return event


def _add_optional(event: dict[str, Any], request: DecideRequest, decision: Decision) -> None:
    """A decision event's keys that only some decisions have."""
    path = decision.info.get("path")
    if path is not None:
        event["path"] = path
    if request.slot_ids:
        event["slot_ids"] = list(request.slot_ids)
    if any(request.slot_exclude):
        event["slot_exclude"] = [sorted(x) for x in request.slot_exclude]
    if request.user_id is not None:
        event["user"] = request.user_id


class _OfferListJSON:
    """The JSON of recent offer lists (``c._multi``: one catalogue per placement recurs
    in every decision, and its ~200 numbers are most of a decision's encoding time).
    Keyed by the identity of the offers' feature dicts, which the request parser
    caches and never changes; an entry holds those dicts, so their ids cannot be
    reused while it lives."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._lists: dict[tuple[int, ...], tuple[list[Any], bytes]] = {}

    def dumps(self, multi: list[Any]) -> bytes:
        key = tuple(map(id, multi))
        hit = self._lists.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], multi, strict=True)):
            return hit[1]
        data = orjson.dumps(multi)
        if len(self._lists) >= self.size:
            self._lists.clear()
        self._lists[key] = (list(multi), data)
        return data


_OFFER_LISTS = _OfferListJSON()


def encode_decision_plain(event: dict[str, Any]) -> tuple[bytes, int | None]:
    """The plain twin of :func:`encode_decision`: the event re-ordered with ``c`` last,
    encoded whole, and the offset of ``,"c":`` found by encoding the head alone."""
    if "c" not in event:
        return orjson.dumps(event), None
    head = {k: v for k, v in event.items() if k != "c"}
    return orjson.dumps({**head, "c": event["c"]}), len(orjson.dumps(head)) - 1


def encode_decision(event: dict[str, Any]) -> tuple[bytes, int | None]:
    """A decision's JSON with ``c`` as its last key, and the offset of ``,"c":`` in it
    (the head before it is the decision without its context and offers); an event
    without ``c`` is encoded as it is, with no offset. Byte for byte
    :func:`encode_decision_plain`; the offer list is encoded once per catalogue."""
    c = event.get("c")
    if c is None:
        return orjson.dumps(event), None
    head = orjson.dumps({k: v for k, v in event.items() if k != "c"})
    at = len(head) - 1
    multi = c.get("_multi") if isinstance(c, dict) else None
    if isinstance(multi, list) and next(reversed(c)) == "_multi":  # the usual layout
        context = orjson.dumps({k: v for k, v in c.items() if k != "_multi"})[:-1]
        body = context + (b',"_multi":' if len(context) > 1 else b'"_multi":') + \
            _OFFER_LISTS.dumps(multi) + b"}"
    else:
        body = orjson.dumps(c)
    return head[:at] + b',"c":' + body + b"}", at


class _Catalogues:
    """The JSON of recent offer tuples' ids and features (``ids`` and ``c._multi``),
    keyed by the tuple's identity: the request parser hands out the same tuple for a
    catalogue it has seen (one per placement), and an entry holds the tuple, so its
    id cannot be reused while the entry lives."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._by_id: dict[int, tuple[tuple[Any, ...], bytes, bytes]] = {}

    def get(self, offers: tuple[Any, ...]) -> tuple[bytes, bytes]:
        hit = self._by_id.get(id(offers))
        if hit is None or hit[0] is not offers:
            hit = (offers, orjson.dumps([o.id for o in offers]),
                   _OFFER_LISTS.dumps([o.features for o in offers]))
            if len(self._by_id) >= self.size:
                self._by_id.clear()
            self._by_id[id(offers)] = hit
        return hit[1], hit[2]


_CATALOGUES = _Catalogues()
_HEAD_KEYS = frozenset({"EventId", "Timestamp", "Version", "a", "p", "c", "VWState", "ids"})


def encode_decision_event(request: DecideRequest, decision: Decision,
                          timestamp: str | None = None,
                          **extra: Any) -> tuple[bytes, int | None]:
    """``encode_decision(decision_event(request, decision, timestamp, **extra))``, byte
    for byte, without building the event: the fast twin the server logs with (tested
    to agree with the plain pair). The offers' ids and features are encoded once per
    catalogue (:class:`_Catalogues`) and spliced in; the rest is two small encodes."""
    if "_multi" in request.context or not _HEAD_KEYS.isdisjoint(extra):
        return encode_decision(decision_event(request, decision, timestamp, **extra))
    ids, multi = _CATALOGUES.get(request.offers)
    first = orjson.dumps({"EventId": request.event_id, "Timestamp": timestamp or utc_now(),
                          "Version": "1", "a": [i + 1 for i in decision.order],
                          "p": list(decision.probabilities),
                          "VWState": {"m": decision.model_version}})
    rest: dict[str, Any] = {"slots": decision.slots, "policy": decision.policy,
                            "explore": request.explore, "DeferredAction": request.defer}
    _add_optional(rest, request, decision)
    if extra:
        rest.update(extra)
    head = first[:-1] + b',"ids":' + ids + b"," + orjson.dumps(rest)[1:-1]
    context = orjson.dumps(request.context)[:-1]
    return (head + b',"c":' + context + (b',"_multi":' if len(context) > 1 else b'"_multi":')
            + multi + b"}}", len(head))


def split_head(body: bytes, at: int) -> dict[str, Any] | None:
    """The fields before ``c`` of a decision :func:`encode_decision` wrote, decoded
    from the head's bytes alone (``at``: its ``c_at``). None when ``at`` does not split
    ``body`` as :func:`encode_decision` does: decode it whole then. The fast twin of
    :func:`split_head_plain`."""
    if not 0 < at < len(body) - 6 or body[at:at + 6] != b',"c":{' or body[-2:] != b"}}" \
            or body[:1] != b"{":  # (the joined line is spliced on the opening brace)
        return None
    try:
        head = orjson.loads(body[:at] + b"}")
    except orjson.JSONDecodeError:
        return None  # ``at`` is not at the top level: not this layout
    if not isinstance(head, dict) or "c" in head:
        return None
    return head


def split_head_plain(body: bytes) -> dict[str, Any] | None:
    """The fields before ``c`` of a decision, from the whole event decoded (None when
    ``c`` is not an object and the last key)."""
    event = orjson.loads(body)
    if not isinstance(event, dict) or not isinstance(event.get("c"), dict) or \
            next(reversed(event)) != "c":
        return None
    return {k: v for k, v in event.items() if k != "c"}
