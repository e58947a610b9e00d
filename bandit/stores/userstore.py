"""Per-user interaction signals and caps, from the events the service itself sees.

Privacy by design: a user is only ever known by a salted hash of the id the client
sent (``BANDIT_USER_SALT``; by default a random salt kept in the model directory), so
no raw id is stored or logged; and every signal expires after ``BANDIT_SIGNAL_TTL``
seconds. Nothing here comes from third parties.

Signals (added to the shared context as namespace ``csig``): impressions and clicks
of each offer and each offer category within the TTL, seconds since the last click
(bucketed), and the session depth (decisions within the TTL). Because VW crosses
context and offer namespaces, ``imp=offer-7`` crossed with ``id=offer-7`` lets the
model learn fatigue for that very offer.

Caps: at most N impressions of one offer per user per period (frequency cap), and
per-offer budgets (at most N impressions per period over all users). A capped offer
is removed before the policy decides, so it is never shown and the logged
probabilities are those of the list actually ranked.

Exploration budgets (``BANDIT_EXPLORE_BUDGET``): the store also keeps when each user was
last served a randomised decision, so a budget holds wherever the user's requests land.

Backends: ``memory`` (per process, bounded to ``BANDIT_MAX_USERS`` users),
``sqlite:PATH`` (one file shared by every worker on the host: caps and budgets are exact
across workers) and ``redis://`` (shared by every server). The default, ``auto``, is
memory for one worker and a SQLite file in ``BANDIT_SHARED_DIR`` for several
(``Settings.user_store_kind``).
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

import orjson

from bandit.core.features import Namespaces, escape_cached
from bandit.stores.redis_url import is_redis
from bandit.stores.sqlite_local import ThreadConnections

SIGNAL_NAMESPACE = "csig"


def load_salt(configured: str, model_dir: str) -> bytes:
    """The configured salt, or one generated once and kept beside the models."""
    if configured:
        return configured.encode("utf-8")
    path = Path(model_dir) / ".user_salt"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker is writing it: wait for its content
            salt = path.read_bytes()
            if salt:
                return salt
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty") from None
    salt = secrets.token_hex(16).encode()
    with os.fdopen(fd, "wb") as f:
        f.write(salt)
        f.flush()
        os.fsync(f.fileno())
    return salt


def hash_user(user_id: str, salt: bytes) -> str:
    return hashlib.blake2b(user_id.encode("utf-8"), digest_size=16, key=salt[:64]).hexdigest()


def _tally(feats: dict[str, float], what: str, offer: str, cat: str | None,
           n: float = 1.0) -> None:
    """Count ``n`` impressions (``imp``) or clicks (``clk``) of an offer and its category.
    The offer id is escaped like every feature name (any UTF-8 id is allowed, and an
    id holding a newline would otherwise split VW's shared line); the category comes
    from the offer's features, escaped already."""
    key = f"{what}={escape_cached(offer)}"
    feats[key] = feats.get(key, 0.0) + n
    if cat is not None:
        feats[f"{what}cat={cat}"] = feats.get(f"{what}cat={cat}", 0.0) + n


def _since_bucket(seconds: float) -> str:
    for limit, name in ((60, "1m"), (600, "10m"), (3600, "1h"), (86400, "1d")):
        if seconds < limit:
            return name
    return "old"


@dataclass(frozen=True)
class Cap:
    count: int
    period: float

    @classmethod
    def parse(cls, text: str) -> Cap:
        n, sep, p = text.partition("/")
        if not sep:
            raise ValueError(f"expected COUNT/SECONDS, got {text!r}")
        count, period = int(n), float(p)
        if count < 0 or not period > 0 or not math.isfinite(period):
            raise ValueError(f"cap {text!r} needs COUNT ≥ 0 and SECONDS > 0")
        return cls(count, period)


def parse_budgets(text: str) -> dict[str, Cap]:
    out: dict[str, Cap] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        offer, sep, cap = part.rpartition("=")
        if not sep or not offer:
            raise ValueError(f"expected OFFER=COUNT/SECONDS, got {part!r}")
        out[offer] = Cap.parse(cap)
    return out


class UserStore(Protocol):
    def signals(self, user: str, now: float) -> Namespaces: ...

    def capped(self, user: str | None, offers: list[str], now: float) -> set[str]: ...

    def record_decision(self, user: str | None, event_id: str,
                        shown: list[tuple[str, str | None]], now: float) -> None: ...

    def record_reward(self, event_id: str, slot: int, value: float, now: float) -> None: ...

    def explored(self, user: str, since: float) -> int:
        """How many randomised decisions ``user`` was served since ``since``."""
        ...

    def record_explored(self, user: str, now: float) -> None: ...


@dataclass
class _User:
    impressions: deque[tuple[float, str, str | None]] = field(default_factory=deque)
    clicks: deque[tuple[float, str, str | None]] = field(default_factory=deque)
    decisions: deque[float] = field(default_factory=deque)


class MemoryUserStore:
    """In-process, TTL-bounded, memory-bounded (least recently seen users go first)."""

    def __init__(self, ttl: float, frequency_cap: Cap | None = None,
                 budgets: dict[str, Cap] | None = None, max_users: int = 100_000) -> None:
        self.ttl = ttl
        self.cap = frequency_cap
        self.budgets = budgets or {}
        self.max_users = max_users
        self.users: OrderedDict[str, _User] = OrderedDict()
        self.events: OrderedDict[str, tuple[float, str, list[tuple[str, str | None]]]] = \
            OrderedDict()
        self.offer_log: dict[str, deque[float]] = {}
        self.explored_at: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _horizon(self) -> float:
        longest = max([self.ttl] + ([self.cap.period] if self.cap else []))
        return longest

    def _user(self, user: str, now: float) -> _User:
        u = self.users.get(user)
        if u is None:
            u = self.users[user] = _User()
            while len(self.users) > self.max_users:
                self.users.popitem(last=False)
        else:
            self.users.move_to_end(user)
        keep = now - self._horizon()
        for q in (u.impressions, u.clicks):
            while q and q[0][0] < keep:
                q.popleft()
        while u.decisions and u.decisions[0] < now - self.ttl:
            u.decisions.popleft()
        return u

    def signals(self, user: str, now: float) -> Namespaces:
        with self._lock:
            u = self.users.get(user)
            if u is None:
                return {}
            u = self._user(user, now)
            start = now - self.ttl
            feats: dict[str, float] = {}
            for t, offer, cat in u.impressions:
                if t >= start:
                    _tally(feats, "imp", offer, cat)
            last_click = None
            for t, offer, cat in u.clicks:
                if t >= start:
                    _tally(feats, "clk", offer, cat)
                    last_click = t
            if last_click is not None:
                feats["since_click=" + _since_bucket(now - last_click)] = 1.0
            if u.decisions:
                feats["depth"] = float(len(u.decisions))
            return {SIGNAL_NAMESPACE: feats} if feats else {}

    def capped(self, user: str | None, offers: list[str], now: float) -> set[str]:
        out: set[str] = set()
        with self._lock:
            if self.cap is not None and user is not None:
                # an unseen user has no impressions (and is not created by asking)
                counts: dict[str, int] = {}
                if user in self.users:
                    start = now - self.cap.period
                    for t, offer, _ in self._user(user, now).impressions:
                        if t >= start:
                            counts[offer] = counts.get(offer, 0) + 1
                out |= {o for o in offers if counts.get(o, 0) >= self.cap.count}
            for o in offers:
                b = self.budgets.get(o)
                if b is not None:
                    q = self.offer_log.get(o)
                    while q and q[0] < now - b.period:
                        q.popleft()
                    if q is not None and len(q) >= b.count or b.count == 0:
                        out.add(o)
        return out

    def record_decision(self, user: str | None, event_id: str,
                        shown: list[tuple[str, str | None]], now: float) -> None:
        with self._lock:
            for offer, _ in shown:
                if offer in self.budgets:
                    self.offer_log.setdefault(offer, deque()).append(now)
            if user is None:
                return
            u = self._user(user, now)
            u.decisions.append(now)
            for offer, cat in shown:
                u.impressions.append((now, offer, cat))
            self.events[event_id] = (now, user, shown)
            while self.events and (len(self.events) > 4 * self.max_users or
                                   next(iter(self.events.values()))[0] < now - self.ttl):
                self.events.popitem(last=False)

    def record_reward(self, event_id: str, slot: int, value: float, now: float) -> None:
        if value <= 0:
            return
        with self._lock:
            ev = self.events.get(event_id)
            if ev is None or not 1 <= slot <= len(ev[2]):
                return  # unknown here (another worker's decision, or expired)
            _, user, shown = ev
            offer, cat = shown[slot - 1]
            self._user(user, now).clicks.append((now, offer, cat))

    def explored(self, user: str, since: float) -> int:
        with self._lock:
            q = self.explored_at.get(user)
            while q and q[0] < since:
                q.popleft()
            return len(q) if q else 0

    def record_explored(self, user: str, now: float) -> None:
        with self._lock:
            q = self.explored_at.get(user)
            if q is None:
                q = self.explored_at[user] = deque()
                while len(self.explored_at) > self.max_users:
                    self.explored_at.popitem(last=False)  # forgetting only allows exploring
            else:
                self.explored_at.move_to_end(user)
            while q and q[0] < now - self.ttl:
                q.popleft()
            q.append(now)


class SqliteUserStore:
    """The same signals and caps in one SQLite file shared by the workers of a host."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS imp (user TEXT, offer TEXT, cat TEXT, t REAL);
    CREATE INDEX IF NOT EXISTS imp_user ON imp (user, t);
    CREATE INDEX IF NOT EXISTS imp_offer ON imp (offer, t);
    CREATE TABLE IF NOT EXISTS clk (user TEXT, offer TEXT, cat TEXT, t REAL);
    CREATE INDEX IF NOT EXISTS clk_user ON clk (user, t);
    CREATE TABLE IF NOT EXISTS dec (event TEXT PRIMARY KEY, user TEXT, t REAL);
    CREATE INDEX IF NOT EXISTS dec_user ON dec (user, t);
    CREATE TABLE IF NOT EXISTS exp (user TEXT, t REAL);
    CREATE INDEX IF NOT EXISTS exp_user ON exp (user, t);
    """

    def __init__(self, path: str, ttl: float, frequency_cap: Cap | None = None,
                 budgets: dict[str, Cap] | None = None) -> None:
        self.ttl = ttl
        self.cap = frequency_cap
        self.budgets = budgets or {}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = ThreadConnections(self.path)
        self._last_purge = 0.0
        db = self._db()
        db.executescript(self.SCHEMA)

    def signals(self, user: str, now: float) -> Namespaces:
        db = self._db()
        start = now - self.ttl
        feats: dict[str, float] = {}
        for offer, cat, n in db.execute(
                "SELECT offer, cat, COUNT(*) FROM imp WHERE user=? AND t>=? GROUP BY offer, cat",
                (user, start)):
            _tally(feats, "imp", offer, cat, n)
        last = None
        for offer, cat, n, t in db.execute(
                "SELECT offer, cat, COUNT(*), MAX(t) FROM clk WHERE user=? AND t>=? "
                "GROUP BY offer, cat", (user, start)):
            _tally(feats, "clk", offer, cat, n)
            last = t if last is None else max(last, t)
        if last is not None:
            feats["since_click=" + _since_bucket(now - last)] = 1.0
        (depth,) = db.execute("SELECT COUNT(*) FROM dec WHERE user=? AND t>=?",
                              (user, start)).fetchone()
        if depth:
            feats["depth"] = float(depth)
        return {SIGNAL_NAMESPACE: feats} if feats else {}

    def capped(self, user: str | None, offers: list[str], now: float) -> set[str]:
        db = self._db()
        out: set[str] = set()
        if self.cap is not None and user is not None:
            marks = ",".join("?" * len(offers))
            for offer, n in db.execute(
                    f"SELECT offer, COUNT(*) FROM imp WHERE user=? AND t>=? "  # noqa: S608
                    f"AND offer IN ({marks}) GROUP BY offer",
                    (user, now - self.cap.period, *offers)):
                if n >= self.cap.count:
                    out.add(offer)
            if self.cap.count == 0:
                out |= set(offers)
        for o in offers:
            b = self.budgets.get(o)
            if b is not None:
                (n,) = db.execute("SELECT COUNT(*) FROM imp WHERE offer=? AND t>=?",
                                  (o, now - b.period)).fetchone()
                if n >= b.count:
                    out.add(o)
        return out

    def record_decision(self, user: str | None, event_id: str,
                        shown: list[tuple[str, str | None]], now: float) -> None:
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO imp VALUES (?, ?, ?, ?)",
                           [(user or "", o, c, now) for o, c in shown])
            if user is not None:
                db.execute("INSERT OR REPLACE INTO dec VALUES (?, ?, ?)", (event_id, user, now))
        if now - self._last_purge > 60:
            self._last_purge = now
            horizon = now - max([self.ttl] + ([self.cap.period] if self.cap else []) +
                                [b.period for b in self.budgets.values()])
            with db:
                db.execute("DELETE FROM imp WHERE t<?", (horizon,))
                db.execute("DELETE FROM clk WHERE t<?", (now - self.ttl,))
                db.execute("DELETE FROM dec WHERE t<?", (now - self.ttl,))
                db.execute("DELETE FROM exp WHERE t<?", (now - self.ttl,))

    def record_reward(self, event_id: str, slot: int, value: float, now: float) -> None:
        if value <= 0:
            return
        db = self._db()
        row = db.execute("SELECT user, t FROM dec WHERE event=?", (event_id,)).fetchone()
        if row is None:
            return
        user, t = row
        shown = db.execute("SELECT offer, cat FROM imp WHERE user=? AND t=? ORDER BY rowid",
                           (user, t)).fetchall()
        if 1 <= slot <= len(shown):
            offer, cat = shown[slot - 1]
            with db:
                db.execute("INSERT INTO clk VALUES (?, ?, ?, ?)", (user, offer, cat, now))

    def explored(self, user: str, since: float) -> int:
        (n,) = self._db().execute("SELECT COUNT(*) FROM exp WHERE user=? AND t>=?",
                                  (user, since)).fetchone()
        return int(n)

    def record_explored(self, user: str, now: float) -> None:
        db = self._db()
        with db:
            db.execute("INSERT INTO exp VALUES (?, ?)", (user, now))


class RedisUserStore:
    """The same signals and caps in Redis, shared by every server of a deployment.

    Keys (prefix ``bandit:``): per user sorted sets of impressions, clicks and
    decisions scored by time; per event the shown offers (expiring with the TTL); per
    budgeted offer a sorted set of impression times. Old entries are trimmed on write
    and every key expires, so Redis holds only the signal window.
    """

    def __init__(self, url: str, ttl: float, frequency_cap: Cap | None = None,
                 budgets: dict[str, Cap] | None = None) -> None:
        import redis

        self.r = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.ttl = ttl
        self.cap = frequency_cap
        self.budgets = budgets or {}
        self.horizon = max([ttl] + ([frequency_cap.period] if frequency_cap else []))

    @staticmethod
    def _member(t: float, offer: str, cat: str | None) -> str:
        return orjson.dumps([t, offer, cat, secrets.token_hex(4)]).decode()

    def signals(self, user: str, now: float) -> Namespaces:
        start = now - self.ttl
        p = self.r.pipeline()
        p.zrangebyscore(f"bandit:u:{user}:imp", start, "+inf")
        p.zrangebyscore(f"bandit:u:{user}:clk", start, "+inf")
        p.zcount(f"bandit:u:{user}:dec", start, "+inf")
        imps, clks, depth = p.execute()
        feats: dict[str, float] = {}
        for raw in imps:
            _, offer, cat, _ = orjson.loads(raw)
            _tally(feats, "imp", offer, cat)
        last = None
        for raw in clks:
            t, offer, cat, _ = orjson.loads(raw)
            _tally(feats, "clk", offer, cat)
            last = t if last is None else max(last, t)
        if last is not None:
            feats["since_click=" + _since_bucket(now - last)] = 1.0
        if depth:
            feats["depth"] = float(depth)
        return {SIGNAL_NAMESPACE: feats} if feats else {}

    def capped(self, user: str | None, offers: list[str], now: float) -> set[str]:
        out: set[str] = set()
        if self.cap is not None and user is not None:
            counts: dict[str, int] = {}
            for raw in self.r.zrangebyscore(f"bandit:u:{user}:imp", now - self.cap.period,
                                            "+inf"):
                offer = orjson.loads(cast(bytes, raw))[1]
                counts[offer] = counts.get(offer, 0) + 1
            out |= {o for o in offers if counts.get(o, 0) >= self.cap.count}
        budgeted = [o for o in offers if o in self.budgets]
        if budgeted:
            p = self.r.pipeline()
            for o in budgeted:
                p.zcount(f"bandit:o:{o}:imp", now - self.budgets[o].period, "+inf")
            for o, n in zip(budgeted, p.execute(), strict=True):
                if n >= self.budgets[o].count:
                    out.add(o)
        return out

    def record_decision(self, user: str | None, event_id: str,
                        shown: list[tuple[str, str | None]], now: float) -> None:
        p = self.r.pipeline()
        for offer, _ in shown:
            b = self.budgets.get(offer)
            if b is not None:
                key = f"bandit:o:{offer}:imp"
                p.zadd(key, {self._member(now, offer, None): now})
                p.zremrangebyscore(key, "-inf", now - b.period)
                p.expire(key, int(b.period) + 1)
        if user is not None:
            keep = int(self.horizon) + 1
            imp, dec = f"bandit:u:{user}:imp", f"bandit:u:{user}:dec"
            if shown:
                p.zadd(imp, {self._member(now, o, c): now for o, c in shown})
            p.zremrangebyscore(imp, "-inf", now - self.horizon)
            p.expire(imp, keep)
            p.zadd(dec, {event_id: now})
            p.zremrangebyscore(dec, "-inf", now - self.ttl)
            p.expire(dec, int(self.ttl) + 1)
            p.set(f"bandit:e:{event_id}", orjson.dumps([user, shown]), ex=int(self.ttl) + 1)
        p.execute()

    def record_reward(self, event_id: str, slot: int, value: float, now: float) -> None:
        if value <= 0:
            return
        raw = self.r.get(f"bandit:e:{event_id}")
        if not isinstance(raw, (bytes, str)):
            return
        user, shown = orjson.loads(raw)
        if 1 <= slot <= len(shown):
            offer, cat = shown[slot - 1]
            key = f"bandit:u:{user}:clk"
            p = self.r.pipeline()
            p.zadd(key, {self._member(now, offer, cat): now})
            p.zremrangebyscore(key, "-inf", now - self.ttl)
            p.expire(key, int(self.ttl) + 1)
            p.execute()

    def explored(self, user: str, since: float) -> int:
        return int(self.r.zcount(f"bandit:u:{user}:exp", since, "+inf"))

    def record_explored(self, user: str, now: float) -> None:
        key = f"bandit:u:{user}:exp"
        p = self.r.pipeline()
        p.zadd(key, {self._member(now, "", None): now})
        p.zremrangebyscore(key, "-inf", now - self.ttl)
        p.expire(key, int(self.ttl) + 1)
        p.execute()


def make_user_store(kind: str, ttl: float, cap: Cap | None, b: dict[str, Cap],
                    max_users: int) -> UserStore | None:
    """The backend ``kind`` names, with the frequency cap and budgets already parsed."""
    if kind == "none":
        return None
    if kind == "memory":
        return MemoryUserStore(ttl, cap, b, max_users)
    if kind.startswith("sqlite:"):
        return SqliteUserStore(kind[7:], ttl, cap, b)
    if is_redis(kind):
        return RedisUserStore(kind, ttl, cap, b)
    raise ValueError(f"unknown user store {kind!r} (memory, sqlite:PATH, redis://HOST:PORT, "
                     "none)")

