"""Decision, reward and joined events in VW's DSJSON shape.

Decision (``offers.decisions``)::

    {"EventId", "Timestamp", "Version": "1", "a": [1-based indices, chosen first],
     "p": [probabilities aligned with a], "c": {<context namespaces>,
     "_multi": [<offer namespaces>, ...]}, "VWState": {"m": model version},
     "ids": [offer ids in _multi order], "slots": n, "policy", "explore",
     "DeferredAction": bool, "user"?: salted user hash}

Reward (``offers.rewards``): ``{"EventId", "Timestamp", "v", "slot"?, "kind"?}``;
activation: ``{"EventId", "Timestamp", "activate": true}``.

Joined (``offers.joined``): the decision plus ``_label_cost`` (= −reward),
``_label_probability``, ``_label_Action``, ``_labelIndex`` and ``o`` (every reward
seen), which ``vw --dsjson --cb_explore_adf`` reads as it is.

Layout on the wire: servers write a decision with ``c`` as its last key and give the
byte offset of ``,"c":`` in the message header ``c_at`` (:func:`encode_decision`).
The learner then decodes only the small head before ``c`` and hands the context and
offers to VW as bytes, never as Python objects (:func:`parse_decision_head`,
:func:`joined_line`); messages without the header are decoded whole.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from typing import Any

import orjson

from bandit.errors import BadRequest
from bandit.features import MAX_VALUE, Namespaces, finite
from bandit.types import DecideRequest, Decision, Reward

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


def reward_event(reward: Reward, timestamp: str | None = None) -> dict[str, Any]:
    if reward.user_id is not None and not reward.event_id:
        event: dict[str, Any] = {"User": reward.user_id, "Timestamp": timestamp or utc_now(),
                                 "v": reward.value, "horizon": "long"}
        if reward.kind is not None:
            event["kind"] = reward.kind
        return event
    event = {"EventId": reward.event_id, "Timestamp": timestamp or utc_now(),
             "v": reward.value}
    if reward.slot is not None:
        event["slot"] = reward.slot
    if reward.kind is not None:
        event["kind"] = reward.kind
    if reward.slot_id is not None:
        event["slot_id"] = reward.slot_id
    return event


def activation_event(event_id: str, timestamp: str | None = None) -> dict[str, Any]:
    return {"EventId": event_id, "Timestamp": timestamp or utc_now(), "activate": True}


def cb_label(decision: dict[str, Any], reward: float) -> dict[str, Any]:
    """The CB label fields of a decision (whole or its head): the chosen action is
    ``a[0]``, the cost is −reward."""
    return {"_label_cost": -reward, "_label_probability": decision["p"][0],
            "_label_Action": decision["a"][0], "_labelIndex": decision["a"][0] - 1}


def joined_event(decision: dict[str, Any], reward: float,
                 rewards_seen: list[dict[str, Any]]) -> dict[str, Any]:
    """Attach the CB label to a decision."""
    joined = {**cb_label(decision, reward), "o": rewards_seen}
    joined.update(decision)
    return joined


def ccb_joined_event(decision: dict[str, Any], slot_rewards: list[float],
                     rewards_seen: list[dict[str, Any]]) -> dict[str, Any]:
    """A multi-slot decision with its per-slot rewards as VW's conditional contextual
    bandit DSJSON (``c._slots`` and ``_outcomes``), which ``vw --ccb_explore_adf
    --dsjson`` reads: slot *k*'s outcome names its chosen action (0-based ``_a``), the
    conditional probability it was drawn with (``_p``) and its cost (−reward)."""
    ids = decision.get("ids") or []
    excluded = decision.get("slot_exclude") or []
    slots = []
    outcomes = []
    for k, reward in enumerate(slot_rewards):
        slot: dict[str, Any] = {"_id": str(k + 1)}
        if k < len(excluded) and excluded[k]:
            slot["_inc"] = [i for i, x in enumerate(ids) if x not in set(excluded[k])]
        slots.append(slot)
        outcomes.append({"_id": str(k + 1), "_label_cost": -reward,
                         "_a": [decision["a"][k] - 1], "_p": [decision["p"][k]]})
    out = {k: v for k, v in decision.items() if k not in ("a", "p", "c")}
    out["c"] = {**decision["c"], "_slots": slots}
    out["_outcomes"] = outcomes
    out["o"] = rewards_seen
    return out


def dumps(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


C_AT = "c_at"  # the Kafka header (and spool field) giving the offset of ``,"c":``


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


def encode_decision(event: dict[str, Any]) -> tuple[bytes, int | None]:
    """A decision's JSON with ``c`` as its last key, and the offset of ``,"c":`` in it
    (the head before it is the decision without its context and offers); an event
    without ``c`` is encoded as it is, with no offset. Byte for byte
    ``orjson.dumps`` of the event with ``c`` moved last."""
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


_LABELS: dict[tuple[float, Any, int], bytes] = {}  # (reward, p[0], a[0]) → open label
_LABELS_MAX = 4096


def open_label(head: dict[str, Any], reward: float) -> bytes:
    """The JSON of :func:`cb_label` without its closing brace, for the two lines below
    to share (the few distinct labels, kept: rewards, logged probabilities and chosen
    positions recur)."""
    p0, a0 = head["p"][0], head["a"][0]
    # keys that are equal but written differently (1 and 1.0, 0.0 and -0.0) are not kept
    same = type(reward) is float and type(p0) is float and math.copysign(1.0, reward) > 0
    key = (reward, p0, a0)
    hit = _LABELS.get(key) if same else None
    if hit is None:
        hit = orjson.dumps(cb_label(head, reward))[:-1]
        if same:
            if len(_LABELS) >= _LABELS_MAX:
                _LABELS.clear()
            _LABELS[key] = hit
    return hit


def joined_line(head: dict[str, Any], body: bytes, reward: float,
                rewards_seen: list[dict[str, Any]], label: bytes | None = None) -> bytes:
    """``orjson.dumps(joined_event(decision, …))`` of the decision whose JSON is
    ``body`` (``head`` being its fields before ``c``), by splicing the label in front
    of the body's bytes instead of decoding and re-encoding the context. ``label``:
    :func:`open_label`, if already made."""
    if label is None:
        label = open_label(head, reward)
    return joined_head(label, rewards_seen) + body[1:]


def joined_head(label: bytes, rewards_seen: list[dict[str, Any]]) -> bytes:
    """What :func:`joined_line` puts in place of the body's opening brace."""
    return label + b',"o":' + orjson.dumps(rewards_seen) + b","


def learn_line(head: dict[str, Any], body: bytes, c_at: int, reward: float,
               label: bytes | None = None) -> bytes:
    """The shortest DSJSON from which VW learns exactly what it learns from the joined
    line: the label, ``a`` (VW's reader uses it with the label) and ``c`` (the bytes
    from ``c_at`` on, ``,"c":{…}}``). The other fields of a decision are skipped, which
    makes VW's JSON parse a good deal cheaper."""
    if label is None:
        label = open_label(head, reward)
    return label + b',"a":' + orjson.dumps(head["a"]) + body[c_at:]


# -- decoding (boundary for Kafka messages and files) ---------------------------------

@dataclass(slots=True)
class LoggedDecision:
    """A decision event read back from a log, validated (read-only by convention: not
    frozen, because the learner builds one per message and frozen init is slower).
    Offer ids, actions, probabilities and model version are read from ``raw`` when
    asked for (the learner never asks)."""

    event_id: str
    timestamp: str
    context: Namespaces
    offers: tuple[Namespaces, ...]
    slots: int
    deferred: bool
    raw: dict[str, Any]
    body: bytes | None = None  # the whole event's JSON when ``raw`` is only its head
    c_at: int = 0  # where ``,"c":`` starts in ``body``

    @property
    def ids(self) -> tuple[str, ...]:
        ids = self.raw.get("ids")
        return tuple(ids) if ids is not None else tuple(map(str, range(len(self.offers))))

    @property
    def actions(self) -> tuple[int, ...]:
        """0-based, chosen first."""
        return tuple([x - 1 for x in self.raw["a"]])

    @property
    def probabilities(self) -> tuple[float, ...]:
        return tuple(map(float, self.raw["p"]))

    @property
    def model_version(self) -> str:
        state = self.raw.get("VWState")
        return str(state.get("m", "")) if isinstance(state, dict) else ""


@dataclass(slots=True)
class LoggedReward:
    event_id: str
    timestamp: str
    value: float
    slot: int | None
    kind: str | None
    activate: bool
    slot_id: str | None = None
    user: str | None = None  # set for long-horizon rewards, which have no event id


_NUMBER_TYPES = {int, float}
_INT = {int}
_STR = {str}
_LABEL_KEYS = ("_label_cost", "_label_probability", "_label_Action", "_labelIndex")


_POSITIONS: dict[int, frozenset[int]] = {}


def _positions(n: int) -> frozenset[int]:
    """{1, …, n}."""
    out = _POSITIONS.get(n)
    if out is None:
        out = frozenset(range(1, n + 1))
        if len(_POSITIONS) < 1000:
            _POSITIONS[n] = out
    return out


def _valid_fast(objs: list[Any]) -> bool:
    """True when every object is ``{namespace: {feature: number within ±3e38}}``.

    This runs for every logged decision the learner reads, so it uses C-level
    builtins only; on False the slow path finds and names the bad field.
    """
    if not set(map(type, objs)) <= {dict}:
        return False
    spaces = list(chain.from_iterable(map(dict.values, objs)))
    if not set(map(type, spaces)) <= {dict}:
        return False
    vals = list(chain.from_iterable(map(dict.values, spaces)))
    return not vals or (set(map(type, vals)) <= _NUMBER_TYPES and
                        -MAX_VALUE <= min(vals) and max(vals) <= MAX_VALUE)


def _namespaces(obj: Any, where: str) -> Namespaces:
    """Check canonical namespaces, naming the first bad field (the slow path)."""
    if not isinstance(obj, dict):
        raise BadRequest("expected an object of namespaces", field=where)
    for ns, feats in obj.items():
        if not isinstance(feats, dict):
            raise BadRequest("namespace must be an object", field=f"{where}.{ns}")
        for k, v in feats.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not finite(v):
                raise BadRequest("feature value must be a finite number within ±3e38",
                                 field=f"{where}.{ns}.{k}")
    return obj


def _event_id(obj: dict[str, Any]) -> str:
    eid = obj.get("EventId")
    if not isinstance(eid, str) or not eid:
        raise BadRequest("EventId must be a non-empty string", field="EventId")
    return eid


def parse_decision_head(body: bytes, at: int) -> LoggedDecision | None:
    """The decision in ``body`` (written by :func:`encode_decision`) from its head
    alone: the fields before ``c``, validated like :func:`parse_decision` (the number
    of offers is the length of ``ids``). ``context`` and ``offers`` are left empty and
    ``body`` keeps the bytes. None when ``at`` does not split ``body`` as
    :func:`encode_decision` does: decode it whole then."""
    if not 0 < at < len(body) - 6 or body[at:at + 6] != b',"c":{' or body[-2:] != b"}}" \
            or body[:1] != b"{":  # (the joined line is spliced on the opening brace)
        return None
    try:
        head = orjson.loads(body[:at] + b"}")
    except orjson.JSONDecodeError:
        return None  # ``at`` is not at the top level: not this layout
    if not isinstance(head, dict) or "c" in head or not isinstance(head.get("ids"), list):
        return None
    return _checked(head, {}, (), len(head["ids"]), body, at)


def parse_decision(obj: Any) -> LoggedDecision:
    """Validate a decoded decision event; raise :class:`BadRequest` naming the field."""
    if not isinstance(obj, dict):
        raise BadRequest("event must be a JSON object")
    _event_id(obj)
    c = obj.get("c")
    if not isinstance(c, dict) or not isinstance(c.get("_multi"), list) or not c["_multi"]:
        raise BadRequest("c._multi must be a non-empty list", field="c._multi")
    context = {k: v for k, v in c.items() if k != "_multi"}
    offers = tuple(c["_multi"])
    if not _valid_fast([context, *offers]):
        _namespaces(context, "c")
        for i, o in enumerate(offers):
            _namespaces(o, f"c._multi[{i}]")
    return _checked(obj, context, offers, len(offers), None)


def _checked(obj: dict[str, Any], context: Namespaces, offers: tuple[Namespaces, ...],
             n: int, body: bytes | None, c_at: int = 0) -> LoggedDecision:
    """Validate everything of a decision but its context and offers."""
    eid = _event_id(obj)
    if not obj.keys().isdisjoint(_LABEL_KEYS):
        # the learner writes the label: one in a decision would win over it
        raise BadRequest("a decision must not carry CB label fields",
                         field=next(k for k in _LABEL_KEYS if k in obj))
    a, p = obj.get("a"), obj.get("p")
    if (type(a) is not list or not a or not set(map(type, a)) <= _INT or
            not set(a) <= _positions(n)):
        raise BadRequest(f"a must list action indices in 1..{n}", field="a")
    if type(p) is not list or len(p) != len(a) or not set(map(type, p)) <= _NUMBER_TYPES:
        raise BadRequest("p must be probabilities aligned with a", field="p")
    ps = set(p)  # few distinct values (a policy's probabilities recur)
    if min(ps) < 0 or max(ps) > 1:
        raise BadRequest("p must be probabilities aligned with a", field="p")
    if not 0 < p[0] <= 1:
        raise BadRequest("the chosen action's probability must be in (0, 1]", field="p")
    ids = obj.get("ids")
    if ids is not None and (type(ids) is not list or len(ids) != n or
                            not set(map(type, ids)) <= _STR):
        raise BadRequest("ids must list one string per action", field="ids")
    slots = obj.get("slots", 1)
    if type(slots) is not int or slots < 1:
        raise BadRequest("slots must be a positive integer", field="slots")
    if slots > len(a):
        raise BadRequest("slots must not exceed the actions listed in a", field="slots")
    ts = obj.get("Timestamp")
    return LoggedDecision(eid, ts if type(ts) is str else "", context, offers, slots,
                          bool(obj.get("DeferredAction", False)), obj, body, c_at)


def parse_reward(obj: Any) -> LoggedReward:
    """Validate a decoded reward or activation event."""
    if not isinstance(obj, dict):
        raise BadRequest("event must be a JSON object")
    if "EventId" not in obj and isinstance(obj.get("User"), str) and obj["User"]:
        v = obj.get("v")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise BadRequest("v must be a finite number", field="v")
        kind = obj.get("kind")
        ts = obj.get("Timestamp")
        return LoggedReward("", ts if isinstance(ts, str) else "", float(v), None,
                            kind if isinstance(kind, str) else None, False, None, obj["User"])
    eid = _event_id(obj)
    ts = obj.get("Timestamp")
    ts = ts if isinstance(ts, str) else ""
    if obj.get("activate") is True:
        return LoggedReward(eid, ts, 0.0, None, None, True)
    v = obj.get("v")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BadRequest("v must be a finite number", field="v")
    slot = obj.get("slot")
    if slot is not None and (not isinstance(slot, int) or isinstance(slot, bool) or slot < 1):
        raise BadRequest("slot must be a positive integer", field="slot")
    kind = obj.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise BadRequest("kind must be a string", field="kind")
    slot_id = obj.get("slot_id")
    if slot_id is not None and not isinstance(slot_id, str):
        raise BadRequest("slot_id must be a string", field="slot_id")
    return LoggedReward(eid, ts, float(v), slot, kind, False, slot_id)


def decode(raw: bytes) -> Any:
    """Decode a message body; raise :class:`BadRequest` when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"not valid JSON: {exc}") from None
