"""The offer catalogue: what a client registers once per offer with ``PUT
/v1/offers/{id}`` (features, title and description, payout, cost, advertiser, category,
price, start and end time), kept in one SQLite file shared by the workers of a host
(WAL mode, one connection per thread, as :class:`bandit.stores.userstore.SqliteUserStore`).

:func:`parse_entry` validates a body once, at the boundary, and raises
:class:`bandit.core.errors.BadRequest` naming the offending field; the store holds only
valid entries. An entry is *active* at time *t* when ``start ≤ t < end`` (either bound
may be absent); :meth:`Catalogue.active` lists those, and a decision should only see
active offers. Every write bumps the catalogue's ``revision``, so a worker can keep the
entries in memory and re-read them only when the revision moved
(:meth:`Catalogue.changed_since`).
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis

from bandit.core.errors import BadRequest, NotFound
from bandit.core.features import OFFER_PREFIX, Limits, Namespaces, encode
from bandit.stores.redis_url import is_redis
from bandit.stores.sqlite_local import ThreadConnections
from bandit.value.constraints import OfferFacts

_UTC = timezone.utc
MAX_ID_BYTES = 256
MAX_TEXT = 4096  # characters of a title or description
MAX_NAME = 256  # characters of an advertiser or category
_FIELDS = ("features", "title", "description", "payout", "cost", "price", "advertiser",
           "category", "start", "end")


@dataclass(frozen=True)
class CatalogueEntry:
    """One offer as registered (times as UNIX seconds, UTC)."""

    id: str
    features: dict[str, Any] = field(default_factory=dict)
    title: str = ""
    description: str = ""
    payout: float = 0.0
    cost: float = 0.0
    price: float = 0.0
    advertiser: str | None = None
    category: str | None = None
    start: float | None = None
    end: float | None = None
    updated: float = 0.0

    def active(self, now: float) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)

    @property
    def text(self) -> str:
        """Title and description, as embedded for cold start."""
        return f"{self.title}\n{self.description}".strip()

    def fields(self) -> dict[str, float]:
        """The numeric fields an objective may use (``payout``, ``cost``, ``margin``,
        ``price``)."""
        return {"payout": self.payout, "cost": self.cost, "margin": self.payout - self.cost,
                "price": self.price}

    def facts(self) -> OfferFacts:
        """What the constraints need."""
        return OfferFacts(self.id, self.payout, self.cost, None, self.advertiser,
                          self.category, self.price)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("start", "end", "updated"):
            t = out[k]
            out[k] = None if t is None else _iso(t)
        return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=_UTC).isoformat().replace("+00:00", "Z")


def _number(body: dict[str, Any], key: str, *, minimum: float | None = 0.0) -> float:
    v = body.get(key, 0.0)
    if v is None:
        return 0.0
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BadRequest(f"{key} must be a finite number", field=key)
    if minimum is not None and v < minimum:
        raise BadRequest(f"{key} must be ≥ {minimum:g}", field=key)
    return float(v)


def _text(body: dict[str, Any], key: str, limit: int) -> str:
    v = body.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BadRequest(f"{key} must be a string", field=key)
    if len(v) > limit:
        raise BadRequest(f"{key} longer than {limit} characters", field=key)
    return v


def _name(body: dict[str, Any], key: str) -> str | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or not v.strip():
        raise BadRequest(f"{key} must be a non-empty string", field=key)
    if len(v) > MAX_NAME:
        raise BadRequest(f"{key} longer than {MAX_NAME} characters", field=key)
    return v


def _time(body: dict[str, Any], key: str) -> float | None:
    """ISO-8601 with a time zone (``2026-12-07T10:00:00Z``) or UNIX seconds."""
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool):
        raise BadRequest(f"{key} must be an ISO-8601 time or UNIX seconds", field=key)
    if isinstance(v, (int, float)):
        if not math.isfinite(v) or not 0 <= v < 253402300800:  # (year 10000)
            raise BadRequest(f"{key} out of range", field=key)
        return float(v)
    if not isinstance(v, str):
        raise BadRequest(f"{key} must be an ISO-8601 time or UNIX seconds", field=key)
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{key} is not an ISO-8601 time: {v[:64]!r}", field=key) from None
    if t.tzinfo is None:
        raise BadRequest(f"{key} needs a time zone (e.g. Z)", field=key)
    return t.timestamp()


def check_offer_id(offer_id: Any) -> str:
    if not isinstance(offer_id, str) or not offer_id:
        raise BadRequest("offer id must be a non-empty string", field="id")
    if len(offer_id.encode("utf-8")) > MAX_ID_BYTES:
        raise BadRequest(f"offer id longer than {MAX_ID_BYTES} bytes", field="id")
    return offer_id


def parse_entry(offer_id: Any, body: Any, now: float = 0.0,
                limits: Limits | None = None) -> CatalogueEntry:
    """A catalogue entry from a ``PUT /v1/offers/{id}`` body (a JSON object), or a
    :class:`BadRequest` naming the field."""
    oid = check_offer_id(offer_id)
    if not isinstance(body, dict):
        raise BadRequest("an offer must be a JSON object")
    unknown = sorted(set(body) - set(_FIELDS) - {"id"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; allowed: {', '.join(_FIELDS)}",
                         field=unknown[0])
    if "id" in body and body["id"] != oid:
        raise BadRequest("id in the body differs from the path's", field="id")
    features = body.get("features")
    features = {} if features is None else features
    if not isinstance(features, dict):
        raise BadRequest("features must be an object: {namespace: {feature: value}}",
                         field="features")
    encode(features, OFFER_PREFIX, "features", limits or Limits())  # raises BadRequest
    start, end = _time(body, "start"), _time(body, "end")
    if start is not None and end is not None and not start < end:
        raise BadRequest("end must be after start", field="end")
    return CatalogueEntry(
        oid, features, _text(body, "title", MAX_TEXT), _text(body, "description", MAX_TEXT),
        _number(body, "payout"), _number(body, "cost"), _number(body, "price"),
        _name(body, "advertiser"), _name(body, "category"), start, end, now)


def entry_namespaces(entry: CatalogueEntry, limits: Limits | None = None) -> Namespaces:
    """The entry's features as VW namespaces (title and description as free text)."""
    feats = dict(entry.features)
    extra = {k: v for k, v in (("title", entry.title), ("description", entry.description),
                               ("category", entry.category)) if v}
    if extra:
        feats = {**feats, "catalogue": extra}
    return encode(feats, OFFER_PREFIX, "features", limits or Limits())


def entry_from_json(oid: str, body: bytes | str) -> CatalogueEntry:
    """The entry ``oid`` from its stored JSON (the entry's fields but its id)."""
    d = orjson.loads(body)
    return CatalogueEntry(oid, **d)


class CatalogueStore(Protocol):
    """Where the catalogue's entries are kept: :class:`Catalogue` (one SQLite file, a
    host's) or :class:`~bandit.value.catalogue_redis.RedisCatalogue` (every server's).
    Every write bumps the store's revision; ``changed_since`` is what a view needs to
    catch up. Their failures are :data:`STORE_ERRORS`."""

    path: str

    def put(self, entry: CatalogueEntry) -> bool: ...
    def get(self, offer_id: str) -> CatalogueEntry: ...
    def delete(self, offer_id: str) -> None: ...
    def entries(self) -> list[CatalogueEntry]: ...
    def active(self, now: float) -> list[CatalogueEntry]: ...
    @property
    def revision(self) -> int: ...
    def state(self) -> tuple[int, int]: ...  # (generation, revision): see Catalogue.state
    def changed_since(self, revision: int) -> tuple[int, list[CatalogueEntry], list[str]]: ...
    def close(self) -> None: ...


# a store that cannot be read or written now (file locked, full, damaged; Redis away)
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError, redis.RedisError)


def open_catalogue(source: str | Path) -> CatalogueStore:
    """The store ``BANDIT_CATALOGUE`` names: ``redis://…`` or a SQLite file's path."""
    from bandit.value.catalogue_redis import RedisCatalogue

    return RedisCatalogue(source) if is_redis(source) else Catalogue(source)


class Catalogue:
    """Offer entries in one SQLite file (``path``) shared by a host's workers."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS offers (id TEXT PRIMARY KEY, body BLOB NOT NULL,
                                       revision INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
    INSERT OR IGNORE INTO meta VALUES ('revision', 0);
    INSERT OR IGNORE INTO meta VALUES ('generation', abs(random()));
    CREATE TABLE IF NOT EXISTS deleted (id TEXT PRIMARY KEY, revision INTEGER NOT NULL);
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = ThreadConnections(self.path)
        self._db().executescript(self.SCHEMA)

    def _bump(self, db: sqlite3.Connection) -> int:
        db.execute("UPDATE meta SET v = v + 1 WHERE k = 'revision'")
        (rev,) = db.execute("SELECT v FROM meta WHERE k = 'revision'").fetchone()
        return int(rev)

    def put(self, entry: CatalogueEntry) -> bool:
        """Store (create or replace) an entry; True if it is new."""
        d = asdict(entry)
        del d["id"]
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            existed = db.execute("SELECT 1 FROM offers WHERE id = ?", (entry.id,)).fetchone()
            rev = self._bump(db)
            db.execute("INSERT OR REPLACE INTO offers VALUES (?, ?, ?)",
                       (entry.id, orjson.dumps(d), rev))
            db.execute("DELETE FROM deleted WHERE id = ?", (entry.id,))
        return existed is None

    def get(self, offer_id: str) -> CatalogueEntry:
        """The entry, or :class:`NotFound`."""
        row = self._db().execute("SELECT body FROM offers WHERE id = ?",
                                 (offer_id,)).fetchone()
        if row is None:
            raise NotFound(f"no offer {offer_id!r} in the catalogue", field="id")
        return entry_from_json(offer_id, row[0])

    def delete(self, offer_id: str) -> None:
        """Remove the entry, or :class:`NotFound`."""
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute("DELETE FROM offers WHERE id = ?", (offer_id,))
            if cur.rowcount == 0:
                db.execute("ROLLBACK")
                raise NotFound(f"no offer {offer_id!r} in the catalogue", field="id")
            rev = self._bump(db)
            db.execute("INSERT OR REPLACE INTO deleted VALUES (?, ?)", (offer_id, rev))

    def entries(self) -> list[CatalogueEntry]:
        return [entry_from_json(i, b) for i, b in
                self._db().execute("SELECT id, body FROM offers ORDER BY id")]

    def active(self, now: float) -> list[CatalogueEntry]:
        """The entries shown at ``now`` (start ≤ now < end)."""
        return [e for e in self.entries() if e.active(now)]

    @property
    def revision(self) -> int:
        (rev,) = self._db().execute("SELECT v FROM meta WHERE k = 'revision'").fetchone()
        return int(rev)

    def state(self) -> tuple[int, int]:
        """(generation, revision): the generation is drawn when the store is made, so a
        store made anew (a file replaced, a Redis flushed) is told from the one a view
        read, whose revisions it would otherwise reuse."""
        rows = dict(self._db().execute(
            "SELECT k, v FROM meta WHERE k IN ('generation', 'revision')").fetchall())
        return int(rows.get("generation", 0)), int(rows["revision"])

    def changed_since(self, revision: int) -> tuple[int, list[CatalogueEntry], list[str]]:
        """(current revision, entries written after ``revision``, ids deleted after it)."""
        db = self._db()
        with db:
            db.execute("BEGIN")
            rev = self.revision
            changed = [entry_from_json(i, b) for i, b in db.execute(
                "SELECT id, body FROM offers WHERE revision > ? ORDER BY id", (revision,))]
            gone = [i for (i,) in db.execute(
                "SELECT id FROM deleted WHERE revision > ? ORDER BY id", (revision,))]
        return rev, changed, gone

    def close(self) -> None:
        self._db.close()
