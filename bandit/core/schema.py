"""Validate request bodies once, at the HTTP boundary, into typed objects.

Both the native API and the Personalizer-compatible shapes end up as a
:class:`~bandit.core.types.DecideRequest` / :class:`~bandit.core.types.Reward`. Every problem
raises :class:`~bandit.core.errors.BadRequest` naming the offending field.
"""

from __future__ import annotations

import math
import os
import random
from collections import OrderedDict
from collections.abc import Set
from itertools import islice
from typing import Any

import orjson

from bandit.config.settings import Settings
from bandit.core.errors import BadRequest
from bandit.core.features import (
    CONTEXT_PREFIX,
    ID_NAMESPACE,
    OFFER_PREFIX,
    Limits,
    encode,
    merge,
    offer_id_feature,
)
from bandit.core.types import NONE_ID, DecideRequest, Offer, Reward
from bandit.core.vw_adapter import action_line


def load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="InvalidJson") from None


def _object(body: bytes) -> dict[str, Any]:
    obj = load_json(body)
    if not isinstance(obj, dict):
        raise BadRequest("request body must be a JSON object")
    return obj


def _bool(obj: dict[str, Any], key: str, default: bool) -> bool:
    v = obj.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise BadRequest(f"{key} must be true or false", field=key)
    return v


def check_id(value: Any, field: str, max_bytes: int, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field} must be a non-empty string", field=field)
    if len(value.encode("utf-8")) > max_bytes:
        raise BadRequest(f"{field} is longer than {max_bytes} bytes", field=field)
    return value


LIST_CACHE_SIZE = 1024

# Event ids: 128 random bits from a generator seeded from os.urandom, reseeded in
# every forked child (two workers must never share a sequence); one syscall per
# process instead of one per request.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def new_event_id() -> str:
    return f"{_ids.getrandbits(128):032x}"

RECENT_LISTS = 4  # offer lists looked for verbatim in a body before decoding it whole
# Stands in for a known offer list while the rest of a body is decoded; random, so no
# client can send it and make a body look as if its list had been found.
_PLACEHOLDER = "\x01list-" + os.urandom(12).hex()
_PLACEHOLDER_JSON = orjson.dumps(_PLACEHOLDER)


class OfferCache:
    """Encoded offers by their raw JSON, so a recurring offer is validated and
    encoded once (offers repeat across requests; contexts do not)."""

    def __init__(self, size: int = 20000) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, bytes], Offer] = OrderedDict()

    def get(self, offer_id: str, features: Any, field: str, limits: Limits) -> Offer:
        key = (offer_id, orjson.dumps(features))
        hit = self._items.get(key)
        if hit is not None:
            return hit
        ns = merge({ID_NAMESPACE: {offer_id_feature(offer_id): 1.0}},
                   encode(features, OFFER_PREFIX, field, limits))
        offer = Offer(offer_id, ns, action_line(ns))
        self._items[key] = offer
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return offer


def catalogue_ref(offer_id: str) -> Offer:
    """An offer a decide request names by id only (a string in ``offers``): the
    server takes it from its offer catalogue (:mod:`bandit.value.catalogue_view`). Its
    empty line marks it until then."""
    return Offer(offer_id, {ID_NAMESPACE: {offer_id_feature(offer_id): 1.0}}, "")


def is_catalogue_ref(offer: Offer) -> bool:
    return not offer.line


def null_offer() -> Offer:
    ns = {ID_NAMESPACE: {offer_id_feature(NONE_ID): 1.0}, OFFER_PREFIX + "none": {"none": 1.0}}
    return Offer(NONE_ID, ns, action_line(ns))


NULL_OFFER = null_offer()


_PLAIN_DECIDE = frozenset({"context", "offers", "event_id"})
_NO_IDS: frozenset[str] = frozenset()


def _as_given(features: Any, where: str) -> Any:
    return features


class _KnownList:
    """A validated offer list, and how many bytes followed it in the last body it was
    found in."""

    __slots__ = ("offers", "tail")

    def __init__(self, offers: tuple[Offer, ...]) -> None:
        self.offers = offers
        self.tail = 1  # ``…]}``: the list is the body's last member


class OfferLists:
    """Validated offer lists. Offers repeat across requests (one catalogue per
    placement) where contexts do not: a list seen before is found, in the body's bytes
    or as decoded JSON, instead of validated and encoded again."""

    def __init__(self, settings: Settings, limits: Limits) -> None:
        self.max_offers = settings.max_offers
        self.max_id_bytes = settings.max_id_bytes
        self.limits = limits
        self.cache = OfferCache()
        self._lists: OrderedDict[tuple[str, bytes], _KnownList] = OrderedDict()

    def body(self, body: bytes, field: str) -> tuple[dict[str, Any], Any]:
        """The decoded body and its ``field`` (the offer list). A client that sends the
        same list in every request (one catalogue per placement) sends the same bytes:
        when one of the most recent lists appears verbatim in ``body``, only the rest
        is decoded, with a placeholder in its place, and the list is returned already
        validated (a tuple of offers). Finding the placeholder as ``field`` proves the
        bytes replaced were that field's value; otherwise the body is decoded whole."""
        n = len(body)
        for (f, raw), known in islice(reversed(self._lists.items()), RECENT_LISTS):
            if f != field:
                continue
            # where it ended last time first (a client's bodies share their layout):
            # one comparison instead of a search
            i = n - known.tail - len(raw)
            if i < 0 or not body.startswith(raw, i):
                i = body.find(raw)
                if i < 0:
                    continue
                known.tail = n - i - len(raw)
            try:
                obj = orjson.loads(body[:i] + _PLACEHOLDER_JSON + body[i + len(raw):])
            except orjson.JSONDecodeError:
                break
            if isinstance(obj, dict) and obj.get(field) == _PLACEHOLDER:
                self._lists.move_to_end((f, raw))
                return obj, known.offers
            break
        obj = _object(body)
        return obj, obj.get(field)

    def offers(self, items: Any, field: str, exclude: Set[str],
                features_of: Any, refs: bool = False) -> tuple[Offer, ...]:
        """The eligible offers. A whole list seen before (the usual case: one catalogue
        per placement) is one dictionary lookup (or was found by :meth:`body`);
        otherwise each offer is validated, and each offer seen before is still a lookup
        in the offer cache."""
        if isinstance(items, tuple):
            every: tuple[Offer, ...] | None = items  # a known list, validated before
        else:
            if not isinstance(items, list) or not items:
                raise BadRequest(f"{field} must be a non-empty list", field=field)
            if len(items) > self.max_offers:
                raise BadRequest(f"{field} has {len(items)} entries; at most "
                                 f"{self.max_offers} are allowed", field=field)
            key = (field, orjson.dumps(items))
            known = self._lists.get(key)
            if known is None:
                every = self._validate(items, field, features_of, refs)
                self._lists[key] = _KnownList(every)
                if len(self._lists) > LIST_CACHE_SIZE:
                    self._lists.popitem(last=False)
            else:
                every = known.offers
                self._lists.move_to_end(key)
        assert every is not None
        out = every if not exclude else tuple(o for o in every if o.id not in exclude)
        if not out:
            raise BadRequest("every offer is excluded", field="exclude")
        return out

    def item_id(self, item: Any, where: str, seen: set[str], what: str) -> str:
        """The id of one object of a list whose ids must be unique (offers, slots)."""
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object", field=where)
        oid = check_id(item.get("id"), f"{where}.id", self.max_id_bytes)
        assert oid is not None
        if oid in seen:
            raise BadRequest(f"duplicate {what} id {oid!r}", field=f"{where}.id")
        seen.add(oid)
        return oid

    def _validate(self, items: list[Any], field: str,
                         features_of: Any, refs: bool = False) -> tuple[Offer, ...]:
        """``refs``: an item may be a string, an offer of the catalogue named by id."""
        seen: set[str] = set()
        out = []
        for i, item in enumerate(items):
            where = f"{field}[{i}]"
            if refs and isinstance(item, str):
                oid = self.item_id({"id": item}, where, seen, "offer")
                if oid == NONE_ID:
                    raise BadRequest(f"offer id {NONE_ID!r} is reserved", field=where)
                out.append(catalogue_ref(oid))
                continue
            oid = self.item_id(item, where, seen, "offer")
            if oid == NONE_ID:
                raise BadRequest(f"offer id {NONE_ID!r} is reserved for the null offer "
                                 "(use allow_none)", field=f"{where}.id")
            feats = features_of(item.get("features"), f"{where}.features")
            out.append(self.cache.get(oid, feats, f"{where}.features", self.limits))
        return tuple(out)


class RequestParser:
    """Turns request bodies into typed requests under the configured limits."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.limits = Limits(settings.max_features, settings.max_name_bytes, settings.max_depth)
        self.lists = OfferLists(settings, self.limits)

    # -- shared pieces ------------------------------------------------------------------
    def _exclude(self, value: Any, field: str) -> set[str]:
        if value is None:
            return set()
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise BadRequest(f"{field} must be a list of offer ids", field=field)
        return set(value)

    def _slots(self, value: Any, n: int) -> int:
        if value is None:
            return 1
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadRequest("slots must be an integer", field="slots")
        hi = min(self.s.max_slots, n)
        if not 1 <= value <= hi:
            raise BadRequest(f"slots must be between 1 and {hi} (offers after exclusion: {n}, "
                             f"BANDIT_MAX_SLOTS: {self.s.max_slots})", field="slots")
        return value

    def _event_id(self, value: Any, field: str) -> str:
        if value is None:
            return new_event_id()
        eid = check_id(value, field, self.s.max_id_bytes)
        assert eid is not None
        return eid

    def reward_value(self, value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"{field} must be a number", field=field)
        x = float(value)
        if not math.isfinite(x):
            raise BadRequest(f"{field} must be a finite number", field=field)
        if not self.s.reward_min <= x <= self.s.reward_max:
            raise BadRequest(f"{field} must be between {self.s.reward_min} and "
                             f"{self.s.reward_max}", field=field)
        return x

    # -- native API ---------------------------------------------------------------------
    def decide(self, body: bytes) -> DecideRequest:
        obj, items = self.lists.body(body, "offers")
        context = encode(obj.get("context"), CONTEXT_PREFIX, "context", self.limits)
        if obj.keys() <= _PLAIN_DECIDE:  # no options given: their defaults
            offers = self.lists.offers(items, "offers", _NO_IDS, _as_given, refs=True)
            return DecideRequest(self._event_id(obj.get("event_id"), "event_id"), context,
                                 offers)
        exclude = self._exclude(obj.get("exclude"), "exclude")
        offers = self.lists.offers(items, "offers", exclude, _as_given, refs=True)
        return DecideRequest(
            event_id=self._event_id(obj.get("event_id"), "event_id"),
            context=context,
            offers=offers,
            slots=self._slots(obj.get("slots"), len(offers)),
            explore=_bool(obj, "explore", True),
            defer=_bool(obj, "defer", False),
            user_id=check_id(obj.get("user_id"), "user_id", self.s.max_id_bytes, required=False),
            explain=_bool(obj, "explain", False),
            allow_none=_bool(obj, "allow_none", False),
            predict=_bool(obj, "predict", False),
        )

    def reward(self, body: bytes) -> Reward:
        obj = _object(body)
        slot = obj.get("slot")
        if slot is not None and (not isinstance(slot, int) or isinstance(slot, bool)
                                 or not 1 <= slot <= self.s.max_slots):
            raise BadRequest(f"slot must be an integer between 1 and {self.s.max_slots}",
                             field="slot")
        kind = obj.get("kind")
        if kind is not None:
            kind = check_id(kind, "kind", 64)
        value = self.reward_value(obj.get("reward"), "reward")
        user = check_id(obj.get("user_id"), "user_id", self.s.max_id_bytes, required=False)
        if obj.get("event_id") is None and user is not None:
            # a long-horizon reward (return visit, second purchase): attributed to the
            # user's earlier decisions by the learner
            return Reward("", value, None, kind, user_id=user)
        eid = check_id(obj.get("event_id"), "event_id", self.s.max_id_bytes)
        assert eid is not None
        return Reward(eid, value, slot, kind)

    # -- Personalizer-compatible API ----------------------------------------------------
    def _feature_list(self, value: Any, field: str) -> dict[str, Any]:
        """Personalizer sends features as a list of objects; merge them into one."""
        if value is None:
            return {}
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            raise BadRequest(f"{field} must be a list of objects", field=field)
        merged: dict[str, Any] = {}
        for part in value:
            for k, v in part.items():
                if isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **v}
                else:
                    merged[k] = v
        return merged

    def personalizer_rank(self, body: bytes) -> DecideRequest:
        obj, items = self.lists.body(body, "actions")
        context = encode(self._feature_list(obj.get("contextFeatures"), "contextFeatures"),
                         CONTEXT_PREFIX, "contextFeatures", self.limits)
        exclude = self._exclude(obj.get("excludedActions"), "excludedActions")
        offers = self.lists.offers(items, "actions", exclude, self._feature_list)
        return DecideRequest(
            event_id=self._event_id(obj.get("eventId"), "eventId"),
            context=context,
            offers=offers,
            slots=1,
            explore=True,
            defer=_bool(obj, "deferActivation", False),
        )

    def personalizer_multislot_rank(self, body: bytes) -> DecideRequest:
        """Personalizer's multi-slot rank: ``slots`` lists ``{"id", "excludedActions"?,
        "baselineAction"?, "features"?}``; slot *k* of the list is position *k*."""
        obj = _object(body)
        context = encode(self._feature_list(obj.get("contextFeatures"), "contextFeatures"),
                         CONTEXT_PREFIX, "contextFeatures", self.limits)
        offers = self.lists.offers(obj.get("actions"), "actions", set(), self._feature_list)
        slots = obj.get("slots")
        if not isinstance(slots, list) or not slots:
            raise BadRequest("slots must be a non-empty list", field="slots")
        if len(slots) > min(self.s.max_slots, len(offers)):
            raise BadRequest(f"at most {min(self.s.max_slots, len(offers))} slots are allowed "
                             f"(BANDIT_MAX_SLOTS: {self.s.max_slots}, actions: {len(offers)})",
                             field="slots")
        ids: list[str] = []
        seen: set[str] = set()
        exclude: list[frozenset[str]] = []
        baselines: list[str | None] = []
        action_ids = {o.id for o in offers}
        for i, slot in enumerate(slots):
            where = f"slots[{i}]"
            ids.append(self.lists.item_id(slot, where, seen, "slot"))
            exclude.append(frozenset(self._exclude(slot.get("excludedActions"),
                                                   f"{where}.excludedActions")))
            baseline = slot.get("baselineAction")
            if baseline is not None and (not isinstance(baseline, str) or
                                         baseline not in action_ids):
                raise BadRequest("baselineAction must be the id of one of the actions",
                                 field=f"{where}.baselineAction")
            baselines.append(baseline)
            self._feature_list(slot.get("features"), f"{where}.features")
        return DecideRequest(
            event_id=self._event_id(obj.get("eventId"), "eventId"),
            context=context, offers=offers, slots=len(slots), explore=True,
            defer=_bool(obj, "deferActivation", False), slot_ids=tuple(ids),
            slot_exclude=tuple(exclude), slot_defaults=tuple(baselines))

    def personalizer_multislot_reward(self, event_id: str, body: bytes) -> list[Reward]:
        eid = check_id(event_id, "eventId", self.s.max_id_bytes)
        assert eid is not None
        obj = _object(body)
        items = obj.get("reward")
        if not isinstance(items, list) or not items:
            raise BadRequest("reward must be a non-empty list of {slotId, value}",
                             field="reward")
        out = []
        for i, item in enumerate(items):
            where = f"reward[{i}]"
            if not isinstance(item, dict):
                raise BadRequest(f"{where} must be an object", field=where)
            sid = check_id(item.get("slotId"), f"{where}.slotId", self.s.max_id_bytes)
            out.append(Reward(eid, self.reward_value(item.get("value"), f"{where}.value"),
                              slot_id=sid))
        return out

    def personalizer_reward(self, event_id: str, body: bytes) -> Reward:
        eid = check_id(event_id, "eventId", self.s.max_id_bytes)
        assert eid is not None
        obj = _object(body)
        return Reward(eid, self.reward_value(obj.get("value"), "value"))
