"""Why an offer was chosen: the terms of the model's prediction for it, in reward units.

VW scores an offer with a linear function of the offer's features, the context's and the
crossings of the two its interactions name (``-q co``: every context namespace with every
offer namespace); the offer with the lowest predicted cost (the highest predicted reward)
is the greedy choice. A term's contribution is ``-weight × value`` (the cost VW predicts
is the negative reward), so a positive contribution pushed the offer up.

Only terms that involve the offer are listed: a context feature on its own adds the same
amount to every offer's score, so it never decides between them; crossed with the offer's
features it can, and then it is listed as the crossing (``namespace`` ``cuser*o``,
``feature`` ``country=FR*kind=shoe``). The weights come from the model itself
(:meth:`~bandit.core.vw_adapter.VWModel.term_weights`), so the explanation holds whatever the
features' encoding is.
"""

from __future__ import annotations

from typing import Any, Protocol

from bandit.core.features import Namespaces


class Weighted(Protocol):
    def interactions(self) -> list[tuple[str, ...]]: ...

    def term_weights(self, terms: list[tuple[tuple[str, str], ...]]) -> list[float]: ...


Feature = tuple[str, str, float, bool]  # namespace, name, value, from the offer
Term = tuple[tuple[str, str], ...]


def terms(context: Namespaces, offer: Namespaces, interactions: list[tuple[str, ...]]
          ) -> list[tuple[Term, float]]:
    """The offer's terms with their values: its own features, and every crossing the
    interactions make that involves at least one of them. VW groups namespaces by their
    initial and crosses groups feature by feature; within one group crossed with itself
    (``-q oo``, ``--cubic cco``) it takes each unordered combination once."""
    groups: dict[str, list[Feature]] = {}
    for part, mine in ((offer, True), (context, False)):  # the offer's come first
        for ns, feats in part.items():
            groups.setdefault(ns[:1], []).extend((ns, f, v, mine) for f, v in feats.items())
    out: list[tuple[Term, float]] = [(((ns, f),), v) for ns, feats in offer.items()
                                     for f, v in feats.items()]
    for initials in interactions:
        if ":" in initials:
            continue  # (a wildcard: not used by this service's specs)
        lists = [groups.get(c, []) for c in initials]
        out += _crossings(initials, lists)
    return out


def _crossings(initials: tuple[str, ...], lists: list[list[Feature]]
               ) -> list[tuple[Term, float]]:
    out: list[tuple[Term, float]] = []

    def walk(k: int, start: int, chosen: list[Feature]) -> None:
        if k == len(lists):
            if any(f[3] for f in chosen):
                value = 1.0
                for f in chosen:
                    value *= f[2]
                out.append((tuple((f[0], f[1]) for f in chosen), value))
            return
        same = k > 0 and initials[k] == initials[k - 1]
        for i in range(start if same else 0, len(lists[k])):
            walk(k + 1, i, [*chosen, lists[k][i]])

    walk(0, 0, [])
    return out


def contributions(model: Weighted, context: Namespaces, offer: Namespaces,
                  top: int = 5) -> list[dict[str, Any]]:
    """The ``top`` terms of the offer's predicted reward by size, largest first."""
    found = terms(context, offer, model.interactions())
    weights = model.term_weights([t for t, _ in found])
    out: list[dict[str, Any]] = []
    for (term, value), w in zip(found, weights, strict=True):
        c = -w * value
        if c != 0.0:
            out.append({"namespace": "*".join(ns for ns, _ in term),
                        "feature": "*".join(f for _, f in term), "contribution": c,
                        "interaction": len(term) > 1})
    out.sort(key=lambda x: -abs(float(x["contribution"])))
    return out[:top]
