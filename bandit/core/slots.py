"""The slot-k rule of a multi-slot decision, shared by the server and the learner.

Slot 1 is drawn over the eligible offers; slot *k* ≥ 2 over the offers the slots above
left (those a slot excludes by id sit that slot out and come back after it, at the end
of the list), with the slot position as a shared feature (namespace ``cslot``). The
server (:mod:`bandit.core.policy`) predicts slot *k* from exactly this list and context, and
the learner (:func:`bandit.core.codec.slot_example`) learns slot *k* from them, so the two
must come from here: an offer list in another order is another example to VW.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

SLOT_NAMESPACE = "cslot"


def slot_context(context: dict[str, Any], slot: int) -> dict[str, Any]:
    """The shared features slot ``slot`` (1-based) is predicted and learned from:
    the context, plus the slot position for slots after the first."""
    return context if slot == 1 else {**context, SLOT_NAMESPACE: {f"k={slot}": 1.0}}


def slot_split(remaining: list[int], excluded: Collection[str] | None,
               id_of: Callable[[int], str | None]) -> tuple[list[int], list[int]]:
    """The offers (indices) of ``remaining`` a slot may show, and those it excludes by
    id (``id_of``: an index's offer id). Without exclusions, ``remaining`` itself."""
    if not excluded:
        return remaining, []
    allowed = [i for i in remaining if id_of(i) not in excluded]
    blocked = [i for i in remaining if id_of(i) in excluded]
    return allowed, blocked


def slot_candidates(n: int, shown: Sequence[int],
                    slot_exclude: Sequence[Collection[str]] | None,
                    id_of: Callable[[int], str | None]) -> list[int]:
    """The offers (0-based indices, in the order the server listed them) slot
    ``len(shown) + 1`` was drawn from, given the offers ``shown`` (0-based) in the
    slots above and each slot's excluded ids: the server's draw, replayed."""
    remaining = list(range(n))
    for k in range(len(shown) + 1):
        excluded = slot_exclude[k] if slot_exclude is not None and k < len(slot_exclude) \
            else None
        allowed, blocked = slot_split(remaining, excluded, id_of)
        if k == len(shown):
            return allowed
        remaining = [i for i in allowed if i != shown[k]] + blocked
    raise AssertionError("unreachable")  # the loop returns at k == len(shown)
