"""Typed, already-validated objects that the core works with.

Only :mod:`bandit.core.schema` (HTTP), the Kafka decoders and file readers build these
from untrusted input; everything after the boundary trusts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bandit.core.features import Namespaces


@dataclass(frozen=True, slots=True)
class Offer:
    """One eligible offer: its id, canonical features and cached VW text line."""

    id: str
    features: Namespaces
    line: str


@dataclass(slots=True)
class DecideRequest:
    """A validated decision request (read-only by convention, changed only through
    :func:`dataclasses.replace`: not frozen, because one is built per request and a
    frozen dataclass's init costs twice as much)."""

    event_id: str
    context: Namespaces
    offers: tuple[Offer, ...]
    slots: int = 1
    explore: bool = True
    defer: bool = False
    user_id: str | None = None
    explain: bool = False
    slot_ids: tuple[str, ...] = ()                 # Personalizer multi-slot slot ids
    slot_exclude: tuple[frozenset[str], ...] = ()  # per-slot excluded offer ids
    default_id: str | None = None  # the client's own choice (apprentice mode baseline)
    allow_none: bool = False  # "show nothing" may be chosen (the null offer)
    exploration: float | None = None  # epsilon-greedy around the model's best (None: off)
    slot_defaults: tuple[str | None, ...] = ()  # per-slot baseline offer ids (apprentice)
    predict: bool = False  # reply with each offer's calibrated head predictions


@dataclass(slots=True)
class Decision:
    """The outcome of ``policy.decide`` (read-only by convention; not frozen, for the
    same reason as :class:`DecideRequest`).

    ``order`` lists 0-based indices into the request's offers, chosen first;
    ``probabilities`` is aligned with ``order``: for the shown slots it is the
    probability with which each slot's offer was chosen (slot k conditional on the
    offers of slots before it), for the rest the policy's probability of the offer.
    """

    event_id: str
    order: tuple[int, ...]
    probabilities: tuple[float, ...]
    slots: int
    model_version: str
    policy: str
    explored: bool
    info: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reward:
    event_id: str
    value: float
    slot: int | None = None
    kind: str | None = None
    slot_id: str | None = None  # Personalizer multi-slot rewards name the slot
    user_id: str | None = None  # long-horizon rewards name the user, not the event


NONE_ID = "__none__"  # the null offer: "show nothing" as an action the policy can choose
