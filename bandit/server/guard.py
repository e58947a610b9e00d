"""The gate in front of every route: API keys with scopes, rate limits, body timeouts.

A pure ASGI middleware (no per-request Starlette machinery), so it costs a few
microseconds.

* **Keys.** ``BANDIT_API_KEYS`` lists ``SHA256:SCOPE+SCOPE`` entries: only hashes of
  the keys are configured (``bandit-serve --hash-key KEY`` prints one), and a
  presented key is hashed and compared with every configured hash in constant time.
  Clients send ``Authorization: Bearer KEY``, ``X-API-Key: KEY`` or, as
  Personalizer clients do, ``Ocp-Apim-Subscription-Key: KEY``. Scopes: ``decide``
  (decide and rank routes), ``reward`` (rewards and activations), ``admin`` (model
  pinning and rollback, and Personalizer's configuration, model, logs and evaluation
  routes); any valid key may read ``/readyz``, ``/metrics``,
  ``/v1/model`` and ``/openapi.json``; ``/healthz`` is public. No key or an unknown
  key → 401; a known key without the route's scope → 403 (under ``/personalizer/``
  with Azure's bodies: code ``401``, and ``PermissionDenied``). Keys are never logged.
  Without ``BANDIT_API_KEYS`` the service is open (development only).
* **Rate limits.** A token bucket per key (per client address when keys are off):
  ``BANDIT_RATE_LIMIT`` requests/s for everything, ``BANDIT_REWARD_RATE_LIMIT``
  rewards/s on top (so one key cannot flood the model with rewards). Over the limit →
  429 with ``Retry-After``. Limits hold per worker process.
* **Timeouts.** A request body that has not fully arrived within
  ``BANDIT_REQUEST_TIMEOUT`` seconds gets 408 and the connection is closed, so slow
  clients cannot hold a worker's attention (what still arrives is drained for at most
  half that time, and one second, first: see :mod:`bandit.server.http`); idle
  connections cost the event loop nothing and are capped by ``BANDIT_MAX_CONNECTIONS``
  (uvicorn answers 503 beyond).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from bandit.config.apikeys import SCOPES
from bandit.server.http import DRAIN_SECONDS, drain

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# what Azure AI services answer (``x-ms-error-code`` too) to a missing or unknown key and
# to a key without the operation's permission, on the Personalizer routes
PERSONALIZER_401 = ("401", "Access denied due to invalid subscription key or wrong API "
                    "endpoint. Make sure to provide a valid key for an active subscription "
                    "and use a correct regional API endpoint for your resource.",
                    [(b"x-ms-error-code", b"401")])
PERSONALIZER_403 = ("PermissionDenied", "Principal does not have access to API/Operation.",
                    [(b"x-ms-error-code", b"PermissionDenied")])
PUBLIC = frozenset({"/healthz"})


# Personalizer's configuration, model, logs and evaluation routes, in every generation
_PERSONALIZER_ADMIN = re.compile(r"^/personalizer/(?:v1\.0/|v1\.1-preview\.3/)?"
                                 r"(?:configurations|model|logs|evaluations|"
                                 r"featureImportances)(?:/|$)")


def required_scope(path: str) -> str | None:
    """The scope a path needs (None: any valid key)."""
    if path.startswith(("/v1/admin", "/v1/offers")) or _PERSONALIZER_ADMIN.match(path):
        return "admin"
    if path.endswith(("/decide", "/rank")):
        return "decide"
    if path.endswith(("/rewards", "/reward", "/activate")):
        return "reward"
    return None


@dataclass
class Bucket:
    rate: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """0 when allowed, otherwise the seconds until a token is available."""
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass
class Limiter:
    rate: float
    buckets: dict[str, Bucket] = field(default_factory=dict)
    max_clients: int = 100_000

    def check(self, who: str, now: float) -> float:
        b = self.buckets.get(who)
        if b is None:
            if len(self.buckets) >= self.max_clients:
                self.buckets.clear()  # bounded memory; a reset only forgives, never blocks
            b = self.buckets[who] = Bucket(self.rate, self.rate, now)
        return b.take(now)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return bytes(v)
    return None


def presented_key(scope: Scope) -> str | None:
    auth = _header(scope, b"authorization")
    if auth is not None and auth[:7].lower() == b"bearer ":
        return auth[7:].decode("latin-1").strip()
    for name in (b"x-api-key", b"ocp-apim-subscription-key"):
        v = _header(scope, name)
        if v is not None:
            return v.decode("latin-1").strip()
    return None


@dataclass(slots=True)
class _InFlight:
    deadline: float
    started: bool = False
    expired: bool = False


class Guard:
    def __init__(self, app: ASGIApp, keys: list[tuple[bytes, frozenset[str]]], *,
                 rate: float = 0.0, reward_rate: float = 0.0, body_timeout: float = 10.0,
                 on_refuse: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.keys = keys
        self.limiter = Limiter(rate) if rate > 0 else None
        self.reward_limiter = Limiter(reward_rate) if reward_rate > 0 else None
        self.body_timeout = body_timeout
        self.on_refuse = on_refuse
        self._inflight: dict[asyncio.Task[Any], _InFlight] = {}
        self._sweep_loop: asyncio.AbstractEventLoop | None = None
        self._tick = min(0.25, body_timeout / 4)
        self._open = not self.keys and self.limiter is None and self.reward_limiter is None

    def _identify(self, scope: Scope) -> tuple[str | None, frozenset[str] | None]:
        """(client identity for limits, scopes); scopes None = no valid key."""
        if not self.keys:
            client = scope.get("client") or ("?", 0)
            return f"ip:{client[0]}", frozenset(SCOPES)
        key = presented_key(scope)
        if not key:
            return None, None
        digest = hashlib.sha256(key.encode("utf-8", "replace")).digest()
        found: frozenset[str] | None = None
        for stored, scopes in self.keys:  # compare with every entry: no early exit
            if hmac.compare_digest(stored, digest):
                found = scopes
        return (digest.hex()[:16], found) if found is not None else (None, None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC:
            await self.app(scope, receive, send)
            return
        if self._open:  # no keys and no limits: nothing to check
            await self._call_with_deadline(scope, receive, send)
            return
        who, scopes = self._identify(scope)
        azure = scope["path"].startswith("/personalizer/")  # Azure's answers there
        if scopes is None:
            if azure:
                await self._refuse(send, 401, *PERSONALIZER_401)
            else:
                await self._refuse(send, 401, "Unauthorized", "a valid API key is required",
                                   [(b"www-authenticate", b'Bearer realm="offer-bandit"')])
            return
        needed = required_scope(scope["path"])
        if needed is not None and needed not in scopes:
            if azure:
                await self._refuse(send, 403, *PERSONALIZER_403)
            else:
                await self._refuse(send, 403, "Forbidden",
                                   f"this key may not use {needed} routes")
            return
        now = time.monotonic()
        assert who is not None
        for limiter, applies in ((self.limiter, True),
                                 (self.reward_limiter, needed == "reward")):
            if limiter is not None and applies:
                wait = limiter.check(who, now)
                if wait > 0:
                    await self._refuse(send, 429, "TooManyRequests",
                                       "rate limit exceeded; retry later",
                                       [(b"retry-after", str(max(1, math.ceil(wait))).encode())])
                    return
        await self._call_with_deadline(scope, receive, send)

    async def _call_with_deadline(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The body deadline, with one timer for all requests: each request in flight
        is registered with its deadline, and a timer callback (every ``tick`` seconds,
        while requests are in flight) cancels those past it. Handlers wait while
        reading the body and, on the hot routes, for their batch (a loop iteration), so
        it cuts a body that does not arrive (answered 408), a request whose batch has
        not run by then (408; not decided), or a response the client stopped reading
        (the connection is dropped). A hot route whose handler had already run when the
        deadline reached its task answers it (see ``FastRoutes``)."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None
        state = _InFlight(time.monotonic() + self.body_timeout)
        self._inflight[task] = state
        if self._sweep_loop is not loop:  # no sweep armed on this loop yet
            self._sweep_loop = loop
            loop.call_later(self._tick, self._sweep)

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state.started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if not state.expired:
                raise  # cancelled by someone else (shutdown): not ours to answer
            task.uncancel()
            if state.started:  # the client stopped reading the response: drop it
                raise TimeoutError("response not read in time") from None
            # a client that is merely slow may finish meanwhile and then read the 408;
            # a slow-loris is cut off after this short drain
            await drain(receive, seconds=min(DRAIN_SECONDS, self.body_timeout / 2))
            await self._refuse(send, 408, "RequestTimeout",
                               f"the request body did not arrive within "
                               f"{self.body_timeout:g} s", [(b"connection", b"close")])
        finally:
            del self._inflight[task]

    def _sweep(self) -> None:
        """A timer callback (not a task): cancel what is past its deadline, and stay
        armed while requests are in flight."""
        now = time.monotonic()
        for task, state in list(self._inflight.items()):
            if state.deadline <= now and not state.expired:
                state.expired = True
                task.cancel()
        loop = self._sweep_loop
        if self._inflight and loop is not None and not loop.is_closed():
            loop.call_later(self._tick, self._sweep)
        else:
            self._sweep_loop = None

    async def _refuse(self, send: Send, status: int, code: str, message: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
        if self.on_refuse is not None:
            self.on_refuse(code)
        body = orjson.dumps({"error": {"code": code, "message": message}})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                *(headers or [])]})
        await send({"type": "http.response.body", "body": body})
