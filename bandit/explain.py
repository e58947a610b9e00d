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
(:meth:`~bandit.vw_adapter.VWModel.term_weights`), so the explanation holds whatever the
features' encoding is.
"""

from __future__ import annotations

from typing import Any, Protocol

from bandit.features import Namespaces


class Weighted(Protocol):
    def interactions(self) -> list[tuple[str, str]]: ...

    def term_weights(self, terms: list[tuple[tuple[str, str], ...]]) -> list[float]: ...


def _crossed(pairs: list[tuple[str, str]], a: str, b: str) -> bool:
    return any((x in (":", a[:1]) and y in (":", b[:1])) for x, y in pairs)


def terms(context: Namespaces, offer: Namespaces, pairs: list[tuple[str, str]]
          ) -> list[tuple[tuple[tuple[str, str], ...], float]]:
    """The offer's terms (features or crossings) with their values."""
    out: list[tuple[tuple[tuple[str, str], ...], float]] = []
    for ns, feats in offer.items():
        out += [(((ns, f),), v) for f, v in feats.items()]
    for cns, cfeats in context.items():
        for ons, ofeats in offer.items():
            if _crossed(pairs, cns, ons):
                out += [(((cns, cf), (ons, of)), cv * ov) for cf, cv in cfeats.items()
                        for of, ov in ofeats.items()]
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
