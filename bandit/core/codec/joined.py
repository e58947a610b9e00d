"""A joined decision's bytes: the CB label spliced in front of the decision's own
bytes (the fast forms) beside the dicts they equal once encoded (the plain twins),
and the split a learner makes of such a line to hand its parts to VW."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

LABEL_KEYS = ("_label_cost", "_label_probability", "_label_Action", "_labelIndex")


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


_LABELS: dict[tuple[float, Any, int], bytes] = {}  # (reward, p[0], a[0]) → open label
_LABELS_MAX = 4096


def open_label(head: dict[str, Any], reward: float) -> bytes:
    """The JSON of :func:`cb_label` without its closing brace, for the lines below
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
    return joined_head(label, rewards_seen) + joined_tail(body)


def joined_head(label: bytes, rewards_seen: list[dict[str, Any]]) -> bytes:
    """What :func:`joined_line` puts in place of the body's opening brace."""
    return label + b',"o":' + orjson.dumps(rewards_seen) + b","


def joined_tail(body: bytes) -> memoryview:
    """What :func:`joined_line` keeps of the body after :func:`joined_head`: all but its
    opening brace (a view: a VW child is sent the two parts without copying the body)."""
    return memoryview(body)[1:]


def learn_event(decision: dict[str, Any], reward: float) -> dict[str, Any]:
    """The plain twin of :func:`learn_line`: the label, ``a`` and ``c``."""
    return {**cb_label(decision, reward), "a": decision["a"], "c": decision["c"]}


def learn_line(head: dict[str, Any], body: bytes, c_at: int, reward: float,
               label: bytes | None = None) -> bytes:
    """The shortest DSJSON from which VW learns exactly what it learns from the joined
    line: the label, ``a`` (VW's reader uses it with the label) and ``c`` (the bytes
    from ``c_at`` on, ``,"c":{…}}``). The other fields of a decision are skipped, which
    makes VW's JSON parse a good deal cheaper. ``orjson.dumps(learn_event(…))``."""
    if label is None:
        label = open_label(head, reward)
    return label + b',"a":' + orjson.dumps(head["a"]) + body[c_at:]


@dataclass(frozen=True, slots=True)
class JoinedParts:
    """A joined (or learn) line cut where a learner needs it, without decoding it.

    ``label``: the label fields opening the line, as :func:`open_label` writes them (no
    closing brace; ``b""`` when the line does not open with them). ``c``: where
    ``,"c":{`` starts. ``context``: the context's JSON without its closing brace
    (``b""``: no namespaces). ``offers``: each offer's JSON without its opening brace
    and its last two closing braces (an offer is namespace → features)."""

    label: bytes
    c: int
    context: bytes
    offers: list[bytes]


def split_joined(line: bytes) -> JoinedParts | None:
    """The parts of a line with ``c`` last and ``_multi`` last in it; None for any
    other layout. Where every part decodes, the cut was JSON's own (a list of valid
    values joined by commas parses as exactly those values); a part that does not
    decode means the line must be decoded whole. The fast twin of
    :func:`split_joined_plain`."""
    c = line.find(b',"c":{')
    m = line.find(b'"_multi":[{', c)
    if c < 0 or m < 0 or line[-5:] != b"}}]}}":
        return None
    if line[m - 1] == 44:  # ','
        context = line[c + 5:m - 1]
    elif m - 1 == c + 5:  # '{': no context
        context = b""
    else:
        return None
    return JoinedParts(line[:label_end(line, c)], c, context, line[m + 11:-5].split(b"}},{"))


def label_end(line: bytes, c: int) -> int:
    """Where the label fields end when they open the line, as :func:`open_label`
    writes them (``{"_label_cost":…,"_labelIndex":N``, before ``c`` at ``c``); else 0."""
    if not line.startswith(b'{"_label_cost":'):
        return 0
    i = line.find(b'"_labelIndex":', 0, c)
    return max(0, line.find(b",", i + 14, c)) if i > 0 else 0


def split_joined_plain(line: bytes) -> JoinedParts | None:
    """:func:`split_joined` by decoding the line and encoding each part again (for a
    line orjson wrote, whose offers each have a namespace)."""
    obj = orjson.loads(line)
    c = obj.get("c") if isinstance(obj, dict) else None
    if not isinstance(c, dict) or next(reversed(obj)) != "c" or not c or \
            next(reversed(c)) != "_multi" or not c["_multi"]:
        return None
    keys = list(obj)
    labelled = keys[:4] == list(LABEL_KEYS) and len(keys) > 5
    label = orjson.dumps({k: obj[k] for k in LABEL_KEYS})[:-1] if labelled else b""
    head = orjson.dumps({k: v for k, v in obj.items() if k != "c"})
    context = {k: v for k, v in c.items() if k != "_multi"}
    return JoinedParts(label, len(head) - 1, orjson.dumps(context)[:-1] if context else b"",
                       [orjson.dumps(o)[1:-2] for o in c["_multi"]])
