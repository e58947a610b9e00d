"""VW's text format: the lines the adapter parses, and the checks that a joined line's
names and values can be written in it.

The CB label is written here only (cost = −reward, the same sign as ``_label_cost`` in
the joined DSJSON, :mod:`bandit.core.codec`).
"""

from __future__ import annotations

import re
from typing import Any

from bandit.core.features import MAX_VALUE, Namespaces, render


def cost_label(reward: float, probability: float) -> str:
    """The CB label of the chosen action: VW minimises cost, we maximise reward."""
    return f"0:{-reward!r}:{probability!r}"


def shared_line(context: Namespaces) -> str:
    return "shared " + render(context) if context else "shared |c"


def action_line(features: Namespaces) -> str:
    return render(features) if features else "|o"


def parse_line(line: str) -> Namespaces:
    """The namespaces of a line :func:`~bandit.core.features.render` wrote (names are
    escaped: a space, ``|`` or ``:`` in one is never part of it)."""
    out: Namespaces = {}
    for part in line.split("|")[1:]:
        words = part.split()
        if not words:
            continue
        feats = out.setdefault(words[0], {})
        for w in words[1:]:
            name, colon, value = w.rpartition(":")
            if colon:
                feats[name] = float(value)
            else:
                feats[w] = 1.0
    return out


def label_text(label: Any) -> tuple[str, int]:
    """The chosen offer's VW text label and index from a joined line's label fields
    (the cost is already −reward there; the index is not checked against the number of
    offers here)."""
    if type(label) is not dict:
        raise ValueError("a joined line must be a JSON object")
    cost: Any = label.get("_label_cost")
    prob: Any = label.get("_label_probability")
    idx: Any = label.get("_labelIndex")
    if type(cost) not in (int, float) or type(prob) not in (int, float) or \
            type(idx) is not int:
        raise ValueError("a joined line needs _label_cost, _label_probability and _labelIndex")
    if not 0 < prob <= 1 or idx < 0:
        raise ValueError(f"label probability {prob!r} or index {idx!r} out of range")
    return f"0:{float(cost)!r}:{float(prob)!r}", idx


# what would break VW's text format (or, for a leading underscore, mean something else
# to its JSON reader) in a namespace or feature name of a joined line
_UNSAFE_NAME = re.compile(r"[|:\s]|^_")


def fits_text(obj: Any, known: set[str]) -> bool:
    """Whether a joined line's context or offer is namespace → feature → number, with
    names that survive VW's text format (then :func:`shared_line` and
    :func:`action_line` write it as the servers do). ``known``: names already checked
    (added to)."""
    if type(obj) is not dict:
        return False
    for ns, feats in obj.items():
        if type(feats) is not dict or (ns not in known and not _safe_name(ns, known)):
            return False
        for name, v in feats.items():
            t = type(v)
            if (t is not float and t is not int) or not -MAX_VALUE <= v <= MAX_VALUE or \
                    (name not in known and not _safe_name(name, known)):
                return False  # (a value past float32's range would make VW's weights NaN)
    return True


def _safe_name(name: Any, known: set[str]) -> bool:
    if type(name) is not str or not name or _UNSAFE_NAME.search(name):
        return False
    if len(known) < 100_000:
        known.add(name)
    return True
