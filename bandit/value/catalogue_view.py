"""A worker's view of the offer catalogue: its entries and their encoded offers in
memory, kept current by revision (:meth:`bandit.value.catalogue.Catalogue.changed_since`),
and the step of a decision that takes offers from it.

An offer a request names by id only (a string in ``offers``) is the catalogue's: its
features (with title, description and category as the ``catalogue`` namespace) come
from its entry, and an id the catalogue does not hold is a 400 naming it. An offer
sent as an object is used as sent. Either way an offer whose entry is not active (before its
``start``, from its ``end`` on) is left out, and its entry gives the objective's
fields and the constraints' facts.

The view reads the catalogue's revision (one row) before each decision (at most
every ``refresh_every`` seconds, default 0: every time) and re-reads only the entries
written since, so an offer put or deleted through another worker counts from the next
decision on. Until the catalogue file exists (no offer ever put) the view looks for
it at most once a second, or at once for a request naming an offer by id only.

A catalogue in Redis (``BANDIT_CATALOGUE=redis://…``, every server's) is read the
same way, at most every :data:`REMOTE_REFRESH_SECONDS` (a round trip, not a local
read) and at once for an id the view does not know, so an offer put through one
server is decided on by every other from its first request naming it, and a change
to an entry reaches them within that time. When the store cannot be read the view
decides on the entries read before; a Redis that does not answer is tried again
after :data:`REMOTE_RETRY_SECONDS` (each try waits up to its timeout, on the
decision path).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bandit.core.errors import BadRequest, Unprocessable
from bandit.core.features import ID_NAMESPACE, Limits, merge, offer_id_feature
from bandit.core.schema import is_catalogue_ref
from bandit.core.types import DecideRequest, Offer
from bandit.core.vw_text import action_line
from bandit.stores.redis_url import is_redis, redacted
from bandit.value.catalogue import (
    STORE_ERRORS,
    CatalogueEntry,
    CatalogueStore,
    entry_namespaces,
    open_catalogue,
)

log = logging.getLogger("bandit.catalogue")

MISSING_RECHECK = 1.0  # s between looks for a catalogue file that does not exist yet
REMOTE_REFRESH_SECONDS = 0.5  # s between reads of a Redis catalogue's revision
REMOTE_RETRY_SECONDS = 5.0  # s before a Redis catalogue that failed is tried again


def entry_offer(entry: CatalogueEntry, limits: Limits) -> Offer:
    """The offer a request naming ``entry``'s id only stands for."""
    ns = merge({ID_NAMESPACE: {offer_id_feature(entry.id): 1.0}},
               entry_namespaces(entry, limits))
    return Offer(entry.id, ns, action_line(ns))


class CatalogueView:
    """The entries and offers of the catalogue at ``source`` (a SQLite file's path, or
    a ``redis://`` URL), as of ``revision``. A file is opened once it exists (a
    server that never sees a catalogue write never makes one)."""

    def __init__(self, source: str | Path, limits: Limits, refresh_every: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.remote = is_redis(source)
        self.source = source
        self.path = Path(source) if not self.remote else None  # the SQLite file
        self._catalogue: CatalogueStore | None = None
        self.limits = limits
        self.refresh_every = refresh_every if refresh_every is not None else \
            REMOTE_REFRESH_SECONDS if self.remote else 0.0
        self.clock = clock
        self.name = redacted(str(source))  # (what logs and errors say)
        self.generation: int | None = None  # the store's that ``revision`` counts in
        self._retry_at = float("-inf")  # a remote store failed: not tried again before
        self.revision = 0
        self.entries: dict[str, CatalogueEntry] = {}
        self._offers: dict[str, Offer] = {}
        self._checked = float("-inf")
        self._missing_until = float("-inf")  # no catalogue file: look again from then on
        self.read_errors = 0
        self.refresh(force=True)

    def close(self) -> None:
        if self._catalogue is not None:
            self._catalogue.close()

    @property
    def catalogue(self) -> CatalogueStore:
        """The shared catalogue (made on first use)."""
        if self._catalogue is None:
            self._catalogue = open_catalogue(self.source)
        return self._catalogue

    def refresh(self, force: bool = False) -> bool:
        """Read what changed since ``revision`` (when due or ``force``); True if
        anything did."""
        now = self.clock()
        if not force and now - self._checked < self.refresh_every:
            return False
        self._checked = now
        if now < self._retry_at:
            return False
        if self.path is not None and self._catalogue is None:
            if not force and now < self._missing_until:
                return False
            if not self.path.exists():
                self._missing_until = now + MISSING_RECHECK
                return False
        try:
            generation, revision = self.catalogue.state()
            reset = generation != self.generation  # a store made anew: read it whole
            if revision == self.revision and not reset:
                return False
            rev, changed, gone = self.catalogue.changed_since(0 if reset else self.revision)
        except STORE_ERRORS as exc:  # unreadable for now: decide on what was read
            self.failed(exc)
            return False
        if reset:
            self.entries.clear()
            self._offers.clear()
            self.generation = generation
        for e in changed:
            self.entries[e.id] = e
            self._offers.pop(e.id, None)
        for oid in gone:
            self.entries.pop(oid, None)
            self._offers.pop(oid, None)
        self.revision = rev
        return True

    def failed(self, exc: Exception) -> None:
        """The store failed (read here, or written by the routes): counted and logged;
        a remote one is not asked again for :data:`REMOTE_RETRY_SECONDS`."""
        self.read_errors += 1
        if self.remote:
            self._retry_at = self.clock() + REMOTE_RETRY_SECONDS
        if self.read_errors == 1 or self.read_errors % 1000 == 0:
            log.warning("offer catalogue %s cannot be used (%s); deciding on the entries "
                        "read before (%d failures)", self.name, exc, self.read_errors)

    def retry_in(self) -> float:
        """Seconds until a remote store that failed is asked again (0: now)."""
        return max(0.0, self._retry_at - self.clock())

    def offer(self, entry: CatalogueEntry) -> Offer:
        hit = self._offers.get(entry.id)
        if hit is None:
            hit = self._offers[entry.id] = entry_offer(entry, self.limits)
        return hit

    def resolve(self, request: DecideRequest, now: float
                ) -> tuple[DecideRequest, dict[str, CatalogueEntry]]:
        """The request with its id-only offers taken from the catalogue and inactive
        ones left out, and the catalogue entries of its offers, by id. Raises
        :class:`BadRequest` naming an id-only offer the catalogue lacks."""
        self.refresh()
        ids_only = [o for o in request.offers if is_catalogue_ref(o)]
        if not self.entries and not ids_only:
            return request, {}  # no catalogue in use
        if any(o.id not in self.entries for o in ids_only):
            self.refresh(force=True)
        offers: list[Offer] = []
        entries: dict[str, CatalogueEntry] = {}
        for o in request.offers:
            entry = self.entries.get(o.id)
            if entry is None:
                if is_catalogue_ref(o):
                    raise BadRequest(f"offer {o.id!r} is not in the catalogue (PUT "
                                     "/v1/offers/{id} first, or send its features)",
                                     field="offers")
                offers.append(o)
                continue
            if entry.active(now):
                offers.append(self.offer(entry) if is_catalogue_ref(o) else o)
                entries[o.id] = entry
        if not offers:
            raise Unprocessable("no offer of the request is active in the catalogue",
                                field="offers")
        if len(offers) == len(request.offers) and not ids_only:
            return request, entries
        return replace(request, offers=tuple(offers),
                       slots=min(request.slots, len(offers))), entries
