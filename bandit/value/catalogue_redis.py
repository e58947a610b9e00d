"""The offer catalogue in Redis (``BANDIT_CATALOGUE=redis://HOST:PORT/DB``): one
catalogue for every server of a deployment, where the SQLite file of
:class:`~bandit.value.catalogue.Catalogue` is one host's.

The same entries, revisions and answers as the SQLite catalogue (the tests run both
on the same writes): every write bumps one revision counter and stamps the entry (or
its deletion) with it, so a server's :class:`~bandit.value.catalogue_view.
CatalogueView` reads only what changed since the revision it has. Each write and the
read of what changed are one Lua script, atomic on the Redis server.

Keys, under ``bandit:catalogue:``: ``offers`` (hash: id → entry JSON), ``revision``
(counter), ``changed`` and ``deleted`` (sorted sets: id → the revision of its last
write or its deletion), ``generation`` (drawn by the first write, so a flushed or
restarted Redis is told from the one a view read). What changed is read in pages of
:data:`PAGE` entries by revision (each page one script; a revision is one write's, so
the pages neither skip nor repeat), so no reply waits on the whole catalogue. The
client's timeouts are short (:data:`TIMEOUT`): the catalogue is read on the decision
path, and a Redis that does not answer is an error the view and the routes handle
(decide on the entries read before; ``503``)."""

from __future__ import annotations

import secrets
from dataclasses import asdict
from typing import Any

import orjson

from bandit.core.errors import NotFound
from bandit.stores.redis_url import redacted
from bandit.value.catalogue import CatalogueEntry, entry_from_json

PREFIX = "bandit:catalogue:"
TIMEOUT = 0.25  # s: connect and answer, each
PAGE = 500  # entries per read of what changed (and per scan of the whole catalogue)

_PUT = """
if redis.call('EXISTS', KEYS[5]) == 0 then redis.call('SET', KEYS[5], ARGV[3]) end
local existed = redis.call('HEXISTS', KEYS[1], ARGV[1])
local rev = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], rev, ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return existed
"""

_DELETE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local rev = redis.call('INCR', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], rev, ARGV[1])
return 1
"""

# one page of what changed after revision ARGV[1] up to ARGV[2] (ARGV[3] at most):
# the ids and revisions of sorted set KEYS[2] and, for entries (KEYS[1] given), bodies
_PAGE = """
local found = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], ARGV[2], 'WITHSCORES',
                         'LIMIT', 0, tonumber(ARGV[3]))
local bodies = {}
if KEYS[1] ~= '' then
  for i = 1, #found, 2 do bodies[#bodies + 1] = redis.call('HGET', KEYS[1], found[i]) end
end
return {found, bodies}
"""


class RedisCatalogue:
    """Offer entries in Redis at ``url``, shared by every server that names it."""

    def __init__(self, url: str) -> None:
        import redis

        self.path = redacted(url)  # (what errors and logs name)
        self.r = redis.Redis.from_url(url, socket_timeout=TIMEOUT,
                                      socket_connect_timeout=TIMEOUT)
        self._keys = [PREFIX + k for k in ("offers", "revision", "changed", "deleted",
                                           "generation")]
        self._put = self.r.register_script(_PUT)
        self._delete = self.r.register_script(_DELETE)
        self._page = self.r.register_script(_PAGE)

    def put(self, entry: CatalogueEntry) -> bool:
        """Store (create or replace) an entry; True if it is new."""
        d = asdict(entry)
        del d["id"]
        return not int(self._put(keys=self._keys, args=[entry.id, orjson.dumps(d),
                                                        secrets.randbits(62) + 1]))

    def get(self, offer_id: str) -> CatalogueEntry:
        """The entry, or :class:`NotFound`."""
        body = self.r.hget(self._keys[0], offer_id)
        if body is None:
            raise NotFound(f"no offer {offer_id!r} in the catalogue", field="id")
        return entry_from_json(offer_id, body)

    def delete(self, offer_id: str) -> None:
        """Remove the entry, or :class:`NotFound`."""
        if not int(self._delete(keys=self._keys, args=[offer_id])):
            raise NotFound(f"no offer {offer_id!r} in the catalogue", field="id")

    def entries(self) -> list[CatalogueEntry]:
        found = self.r.hscan_iter(self._keys[0], count=PAGE)
        return sorted((entry_from_json(_text(i), b) for i, b in found), key=lambda e: e.id)

    def active(self, now: float) -> list[CatalogueEntry]:
        """The entries shown at ``now`` (start ≤ now < end)."""
        return [e for e in self.entries() if e.active(now)]

    @property
    def revision(self) -> int:
        return int(self.r.get(self._keys[1]) or 0)

    def state(self) -> tuple[int, int]:
        """(generation, revision); (0, 0) for a Redis without the catalogue."""
        generation, revision = self.r.mget(self._keys[4], self._keys[1])
        return int(generation or 0), int(revision or 0)

    def changed_since(self, revision: int) -> tuple[int, list[CatalogueEntry], list[str]]:
        """(current revision, entries written after ``revision``, ids deleted after it),
        read in pages up to the revision current when it starts (a write during the
        read has a later revision: the next read has it)."""
        rev = self.revision
        changed = [entry_from_json(_text(i), b) for i, b in self._pages(2, revision, rev)
                   if b is not None]  # (None: deleted during the read; the next has it)
        gone = [_text(i) for i, _ in self._pages(3, revision, rev)]
        return rev, sorted(changed, key=lambda e: e.id), sorted(gone)

    def _pages(self, key: int, after: int, upto: int) -> list[tuple[Any, Any]]:
        """The (id, body) pairs of sorted set ``self._keys[key]`` with revisions in
        (after, upto] (bodies for the entries' set; None for the deletions')."""
        out: list[tuple[Any, Any]] = []
        entries = self._keys[0] if key == 2 else ""
        while after < upto:
            found, bodies = self._page(keys=[entries, self._keys[key]],
                                       args=[after, upto, PAGE])
            ids = found[0::2]
            out += zip(ids, bodies if entries else [None] * len(ids), strict=True)
            if len(ids) < PAGE:
                break
            after = int(found[-1])
        return out

    def close(self) -> None:
        self.r.close()

    def __repr__(self) -> str:
        return f"RedisCatalogue({self.path!r})"


def _text(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x
