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

This module reads events back at the boundary (:func:`parse_decision`,
:func:`parse_decision_head`, :func:`parse_reward`: validated, or a ``BadRequest``
naming the field) and builds rewards. The byte layout of a decision and a joined
decision (``c`` last, its offset in the ``c_at`` header, the label spliced in front)
is :mod:`bandit.core.codec`'s; its names are re-exported here for existing callers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain
from typing import Any

import orjson

# the decision's byte layout lives in bandit.core.codec; these names stay importable here
from bandit.core.codec import (
    C_AT,
    LABEL_KEYS,
    cb_label,
    ccb_joined_event,
    decision_event,
    encode_decision,
    encode_decision_event,
    joined_event,
    joined_head,
    joined_line,
    learn_line,
    open_label,
    split_head,
    utc_now,
)
from bandit.core.errors import BadRequest
from bandit.core.features import MAX_VALUE, Namespaces, finite
from bandit.core.types import Reward

__all__ = [
    "C_AT", "LoggedDecision", "LoggedReward", "activation_event", "cb_label",
    "ccb_joined_event", "decision_event", "decode", "dumps", "encode_decision",
    "encode_decision_event", "joined_event", "joined_head", "joined_line", "learn_line",
    "open_label", "parse_decision", "parse_decision_head", "parse_reward", "reward_event",
    "reward_fields", "utc_now",
]


def reward_event(reward: Reward, timestamp: str | None = None) -> dict[str, Any]:
    if reward.user_id is not None and not reward.event_id:
        event: dict[str, Any] = {"User": reward.user_id, "Timestamp": timestamp or utc_now(),
                                 "v": reward.value, "horizon": "long"}
        if reward.kind is not None:
            event["kind"] = reward.kind
        return event
    return reward_fields({"EventId": reward.event_id, "Timestamp": timestamp or utc_now(),
                          "v": reward.value}, reward.slot, reward.kind, reward.slot_id)


def reward_fields(out: dict[str, Any], slot: int | None, kind: str | None,
                  slot_id: str | None) -> dict[str, Any]:
    """``out`` with the optional fields of a reward that it has (slot, kind, slot id)."""
    if slot is not None:
        out["slot"] = slot
    if kind is not None:
        out["kind"] = kind
    if slot_id is not None:
        out["slot_id"] = slot_id
    return out


def activation_event(event_id: str, timestamp: str | None = None) -> dict[str, Any]:
    return {"EventId": event_id, "Timestamp": timestamp or utc_now(), "activate": True}


def dumps(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)



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
    alone: the fields before ``c`` (:func:`bandit.core.codec.split_head`), validated like
    :func:`parse_decision` (the number of offers is the length of ``ids``). ``context``
    and ``offers`` are left empty and ``body`` keeps the bytes. None when ``at`` does
    not split ``body`` as :func:`encode_decision` does: decode it whole then."""
    head = split_head(body, at)
    if head is None or not isinstance(head.get("ids"), list):
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
    if not obj.keys().isdisjoint(LABEL_KEYS):
        # the learner writes the label: one in a decision would win over it
        raise BadRequest("a decision must not carry CB label fields",
                         field=next(k for k in LABEL_KEYS if k in obj))
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
