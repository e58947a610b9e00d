"""Constraints applied at decision time, before the draw: minimum margin, impression
share per advertiser (or category), and daily budget pacing.

Each constraint looks at the offers still available for a slot (and those already
shown in the decision) and gives each a weight: 0 removes the offer, a value in (0, 1)
down-weights it, 1 leaves it. :class:`ConstraintSet` multiplies them; the value policy
(:class:`bandit.value.heads.ValuePolicy`) drops the removed offers before exploring and
multiplies the exploration pmf by the other weights, then renormalises and draws from
that very pmf, so the logged probabilities are the true ones and replay stays unbiased.
After the decision, :meth:`ConstraintSet.record` counts what was shown.

* :class:`MinMargin` — an offer whose margin (``payout − cost``, or its own ``margin``)
  is below ``minimum`` is removed.
* :class:`ShareCap` — per key (advertiser or category): among the last ``window``
  impressions at most ``⌊share · window⌋`` may have that key. An offer is removed when
  showing it would break that in the window as it would then be (the oldest impression
  leaves as the new one enters). Because every window of the stream satisfies it, the
  share is never exceeded; with several workers each keeping its own window, the
  pooled share is a mixture of per-worker shares, each at most ``share``.
* :class:`BudgetPacer` — per key (advertiser, or ``*`` for all), a daily budget *B*
  spent at each impression by the offer's ``price`` (cost per impression, or the
  expected cost of one). The target by time of day is ``B · F(t)``, *F* the cumulative
  share of the day's traffic by *t* (uniform by default, or 24 hourly weights), plus an
  allowance ``burst · B`` so the day's start is not starved. With *s* spent and *c* the
  offer's price: removed if ``s + c > min(B, B·F(t) + burst·B)`` (never over the budget
  or ahead of the pace); otherwise weighted ``min(1, (B·F(t) + burst·B − s − c) /
  (burst·B))``, a throttle that slows spending smoothly as it nears the pace; a weight
  below ``floor`` removes the offer instead, so no offer stays in with a vanishing
  probability (its importance weight 1/p in replay would have no bound). Days are UTC
  days; spending restarts at midnight.

  The spend *s* is kept in a :class:`~bandit.value.spend_ledger.SpendStore`: this
  process's memory by default, and on a server one SQLite ledger in the model dir that
  every worker of the host shares and that outlives a restart, so the budget is the
  host's. Each impression adds its price to the ledger in one atomic statement that
  returns the key's new total, and a worker reads every key's total again when its
  view is :data:`REFRESH_SECONDS` old (in the decisions' clock). A worker's view of a
  key is therefore never below the ledger's total at its last read or at its last
  impression of that key. With one pacer (one worker) the rule above holds exactly.
  With *W* workers deciding on the same ledger (each one decision at a time, as a
  worker's event loop does), let *d* be the most one decision spends on a key (its
  slots times the largest price of the key's offers) and *L* the limit
  ``min(B, B·F(t) + burst·B)`` at a time *t*. Once the ledger's total reaches *L*,
  a worker that learns of it (by a read or by its own next impression's total) admits
  nothing more by *t*, so each of the other *W − 1* workers adds at most one decision
  admitted on an older view: the host's spend by *t* stays below ``L + W·d`` (with two
  workers, at most ``L + d``). It exceeds *L* by at most what the other workers spent
  in the :data:`REFRESH_SECONDS` (plus the one decision's own time) before the last
  impression. Across hosts, each host has its own ledger and budget.

Every constraint's :meth:`state` is a JSON-able dict for a status page.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from bandit.value.spend_ledger import MemorySpends, SpendStore

DAY = 86_400.0
REFRESH_SECONDS = 0.1  # how old a pacer's view of the other workers' spend may be


@dataclass(frozen=True)
class OfferFacts:
    """What the constraints know of an offer (from its catalogue entry)."""

    id: str
    payout: float = 0.0
    cost: float = 0.0
    margin: float | None = None  # payout − cost when None
    advertiser: str | None = None
    category: str | None = None
    price: float = 0.0  # what one impression spends of its budget

    @property
    def margin_value(self) -> float:
        return self.margin if self.margin is not None else self.payout - self.cost

    def key(self, by: str) -> str | None:
        return self.advertiser if by == "advertiser" else self.category


class Constraint(Protocol):
    name: str

    def weights(self, offers: Sequence[OfferFacts], shown: Sequence[OfferFacts],
                now: float) -> list[float]:
        """A weight in [0, 1] per offer in ``offers`` (``shown``: already drawn in this
        decision, counted as impressions)."""
        ...

    def record(self, shown: Sequence[OfferFacts], now: float) -> None: ...

    def state(self) -> dict[str, object]: ...


class MinMargin:
    """Removes offers whose margin is below ``minimum``."""

    name = "min_margin"

    def __init__(self, minimum: float) -> None:
        if not math.isfinite(minimum):
            raise ValueError("minimum margin must be finite")
        self.minimum = minimum
        self.removed = 0

    def weights(self, offers: Sequence[OfferFacts], shown: Sequence[OfferFacts],
                now: float) -> list[float]:
        out = [1.0 if o.margin_value >= self.minimum else 0.0 for o in offers]
        self.removed += out.count(0.0)
        return out

    def record(self, shown: Sequence[OfferFacts], now: float) -> None:
        pass

    def state(self) -> dict[str, object]:
        return {"minimum": self.minimum, "removed": self.removed}


class ShareCap:
    """At most ``⌊share · window⌋`` of the last ``window`` impressions per key (offers
    without a key are not limited)."""

    def __init__(self, by: str = "advertiser", share: float = 0.3,
                 window: int = 1000) -> None:
        if by not in ("advertiser", "category"):
            raise ValueError("share cap by must be advertiser or category")
        if not 0 < share <= 1 or window < 1:
            raise ValueError("share cap needs 0 < share ≤ 1 and window ≥ 1")
        if math.floor(share * window) < 1:
            raise ValueError(f"share {share} of a window of {window} allows no impression")
        self.by = by
        self.name = f"share_cap_{by}"
        self.share = share
        self.window = window
        self.limit = math.floor(share * window + 1e-9)
        self._recent: deque[str | None] = deque()
        self._counts: Counter[str] = Counter()
        self.removed = 0

    def _count_after(self, key: str, pending: Counter[str], n_pending: int) -> int:
        """Impressions of ``key`` in the window once the pending ones and one more of
        ``key`` are in (the oldest leave as they enter)."""
        count = self._counts[key] + pending[key] + 1
        over = len(self._recent) + n_pending + 1 - self.window
        if over > 0:  # the ``over`` oldest impressions leave the window
            count -= sum(1 for k in islice(self._recent, over) if k == key)
        return count

    def weights(self, offers: Sequence[OfferFacts], shown: Sequence[OfferFacts],
                now: float) -> list[float]:
        pending = Counter(k for o in shown if (k := o.key(self.by)) is not None)
        out = []
        for o in offers:
            key = o.key(self.by)
            ok = key is None or self._count_after(key, pending, len(shown)) <= self.limit
            out.append(1.0 if ok else 0.0)
        self.removed += out.count(0.0)
        return out

    def record(self, shown: Sequence[OfferFacts], now: float) -> None:
        for o in shown:
            key = o.key(self.by)
            self._recent.append(key)
            if key is not None:
                self._counts[key] += 1
            if len(self._recent) > self.window:
                old = self._recent.popleft()
                if old is not None:
                    self._counts[old] -= 1
                    if not self._counts[old]:
                        del self._counts[old]

    def shares(self) -> dict[str, float]:
        n = max(len(self._recent), 1)
        return {k: c / self.window if len(self._recent) >= self.window else c / n
                for k, c in self._counts.items()}

    def state(self) -> dict[str, object]:
        return {"by": self.by, "share": self.share, "window": self.window,
                "limit": self.limit, "in_window": len(self._recent),
                "counts": dict(self._counts), "removed": self.removed}


def _cumulative(profile: Sequence[float] | None) -> list[float]:
    """F at each hour boundary (25 points, F(0) = 0, F(24h) = 1)."""
    if profile is None:
        return [h / 24 for h in range(25)]
    if len(profile) != 24 or any(not math.isfinite(x) or x < 0 for x in profile) or \
            sum(profile) <= 0:
        raise ValueError("a traffic profile is 24 hourly weights ≥ 0 with a positive sum")
    total = sum(profile)
    out = [0.0]
    for x in profile:
        out.append(out[-1] + x / total)
    out[-1] = 1.0
    return out


class BudgetPacer:
    """Daily budgets per key, paced over the day (see the module docstring). ``by``:
    ``advertiser`` (a budget per advertiser; offers of an advertiser without one are
    not limited) or ``all`` (one budget under the key ``*``). ``store``: where the spend
    is kept (this process's memory by default; a shared ledger makes the budgets those
    of every pacer on it)."""

    def __init__(self, budgets: Mapping[str, float], by: str = "advertiser",
                 burst: float = 0.02, profile: Sequence[float] | None = None,
                 floor: float = 0.05, store: SpendStore | None = None) -> None:
        if by not in ("advertiser", "all"):
            raise ValueError("budget pacing by must be advertiser or all")
        for k, b in budgets.items():
            if not math.isfinite(b) or b < 0:
                raise ValueError(f"budget of {k!r} must be a finite number ≥ 0")
        if not 0 < burst <= 1:
            raise ValueError("burst must be in (0, 1]")
        if not 0 <= floor < 1:
            raise ValueError("floor must be in [0, 1)")
        self.floor = floor
        self.by = by
        self.name = f"budget_{by}"
        self.budgets = dict(budgets)
        self.burst = burst
        self._cum = _cumulative(profile)
        self.store: SpendStore = store if store is not None else MemorySpends()
        self.day = -1
        self.spent: dict[str, float] = {}  # this pacer's view of the day's spend
        self._read_at = -math.inf
        self.removed = 0
        self.throttled = 0

    def _key(self, o: OfferFacts) -> str | None:
        return "*" if self.by == "all" else o.advertiser

    def fraction(self, now: float) -> float:
        """F(t): the share of the day's traffic expected by ``now`` (UTC)."""
        h = (now % DAY) / 3600.0
        i = min(int(h), 23)
        return self._cum[i] + (h - i) * (self._cum[i + 1] - self._cum[i])

    def _roll(self, now: float) -> None:
        """Start a new day (older days leave the store) and read every key's total when
        the view is :data:`REFRESH_SECONDS` old."""
        day = int(now // DAY)
        if day != self.day:
            self.day = day
            self.store.forget_before(day)
            self._read_at = -math.inf
        if not 0 <= now - self._read_at < REFRESH_SECONDS:
            self.spent = self.store.totals(day)
            self._read_at = now

    def allowed(self, key: str, now: float) -> float:
        """The spend allowed by ``now``: ``min(B, B·F(t) + burst·B)``."""
        b = self.budgets[key]
        return min(b, b * self.fraction(now) + self.burst * b)

    def weights(self, offers: Sequence[OfferFacts], shown: Sequence[OfferFacts],
                now: float) -> list[float]:
        self._roll(now)
        pending: dict[str, float] = {}
        for o in shown:
            k = self._key(o)
            if k is not None:
                pending[k] = pending.get(k, 0.0) + o.price
        out = []
        for o in offers:
            k = self._key(o)
            if k is None or k not in self.budgets or o.price <= 0:
                out.append(1.0)
                continue
            b = self.budgets[k]
            after = self.spent.get(k, 0.0) + pending.get(k, 0.0) + o.price
            room = self.allowed(k, now) - after
            if room < 0:
                out.append(0.0)
                self.removed += 1
            else:
                w = min(1.0, room / (self.burst * b)) if b > 0 else 0.0
                if w < self.floor or w <= 0:
                    out.append(0.0)
                    self.removed += 1
                else:
                    out.append(w)
                    self.throttled += w < 1.0
        return out

    def record(self, shown: Sequence[OfferFacts], now: float) -> None:
        self._roll(now)
        for o in shown:
            k = self._key(o)
            if k is not None and k in self.budgets and o.price > 0:
                self.spent[k] = self.store.add(self.day, k, o.price)

    def state(self) -> dict[str, object]:
        """The store's spend of its latest day (every pacer's on a shared ledger); this
        pacer's counts of removed and throttled offers."""
        day, spent = self.store.latest()
        if day < self.day:  # this pacer's day has no spend yet
            day, spent = self.day, {}
        return {"by": self.by, "day": day, "burst": self.burst,
                "budgets": dict(self.budgets), "spent": spent, "ledger": str(self.store),
                "removed": self.removed, "throttled": self.throttled}


class ConstraintSet:
    """Several constraints at once: an offer's weight is the product of theirs."""

    def __init__(self, constraints: Sequence[Constraint]) -> None:
        self.constraints = list(constraints)
        self.starved = 0  # decisions where a slot had no offer left

    def weights(self, offers: Sequence[OfferFacts], shown: Sequence[OfferFacts],
                now: float) -> list[float]:
        out = [1.0] * len(offers)
        for c in self.constraints:
            for i, w in enumerate(c.weights(offers, shown, now)):
                out[i] *= max(0.0, min(1.0, w))
        if offers and not any(w > 0 for w in out):
            self.starved += 1
        return out

    def adjuster(self, facts: Sequence[OfferFacts], now: float
                 ) -> _Adjust:
        """The ``adjust`` callback of :meth:`ValuePolicy.decide` for a request whose
        offers have these facts (same order)."""
        def adjust(slot: int, remaining: Sequence[int], shown: Sequence[int]) -> list[float]:
            return self.weights([facts[i] for i in remaining], [facts[i] for i in shown], now)
        return adjust

    def record(self, shown: Sequence[OfferFacts], now: float) -> None:
        for c in self.constraints:
            c.record(shown, now)

    def state(self) -> dict[str, object]:
        return {"starved": self.starved, **{c.name: c.state() for c in self.constraints}}


class _Adjust(Protocol):
    def __call__(self, slot: int, remaining: Sequence[int],
                 shown: Sequence[int]) -> list[float]: ...
