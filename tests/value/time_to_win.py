"""Time-to-win of a new offer that is a near-copy of the best one, with and without the
cold-start prior from text embeddings, on the simulator.

The offers are catalogue entries, as a client would register the simulator's: the
simulator's features (category, brand, payout), a title and a description
(:mod:`tests.value.offer_texts`), payout, category and advertiser; a decision sees them
as the server sees offers named by catalogue id (:func:`entry_offer`). The value-aware
policy (one real VW ``value`` head, objective ``value``, ``epsilon:0.1``, 10 eligible
offers per decision) warms up on ``WARM`` decisions of ``World(seed=0)``. Then a
near-copy of the best-value offer arrives: the same category, brand, payout, appeal and
conversion rate (so the same true value in every context), a paraphrase of its text and
a new id. From the same warm heads and the same traffic, two arms decide and learn on:

* *with embeddings*: the decisions' cold-start prior is :class:`ColdStart`, the one the
  server uses (WordLlama embeddings, the 5 nearest known offers with similarity ≥ 0.2,
  ``blend(prior, own, m, 50)`` while the offer has fewer than 100 impressions);
* *without*: the head's own prediction.

The offer statistics the cold start reads count every decision's impression at once
(as if the learner checkpointed after each decision).

**Time-to-win**: the number of decisions after the near-copy's arrival at the first
check (every ``EVERY`` decisions, the first before any) at which the near-copy is the
greedy choice (highest score) in at least half of ``PROBES`` fixed probe requests where
it is truly the best offer. A probe: a seeded user and the near-copy with 9 other
offers, the original not among them (with both offered either one is right), kept when
the near-copy's true value is the highest; the near-copy at a random position.
``None``: no win within ``HORIZON`` decisions.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bandit.core.offerstats import OfferStats
from bandit.core.types import DecideRequest, Offer
from bandit.demo.simulator import SimOffer, World
from bandit.value.catalogue import CatalogueEntry, parse_entry
from bandit.value.catalogue_view import entry_offer
from bandit.value.cold_start import ColdStart
from bandit.value.embeddings import OfferEmbeddings
from bandit.value.head_files import model_bytes, model_from
from bandit.value.heads import Exploration, Head, Heads, HeadSpec, ValuePolicy
from bandit.value.objective import Objective
from tests.value.offer_texts import paraphrase_of, text_of
from tests.value.sim import LIMITS, encode_context, true_value

WORLD_SEED = 0  # the simulator's default world, as the other value figures
SPEC = HeadSpec(lr=0.1)
KIND = "value"
OBJECTIVE = "value"
EXPLORE = "epsilon:0.1"
K = 10  # eligible offers per decision
WARM = 20_000
HORIZON = 5_000
EVERY = 100
PROBES = 200
WIN_SHARE = 0.5
NEW_BELOW = 100  # BANDIT_NEW_OFFER_IMPRESSIONS' default
NEIGHBOURS = 5  # ColdStart's k, as the server builds it


def best_value_offer(world: World, users: int = 5_000, seed: int = 12_345) -> SimOffer:
    """The offer with the highest mean true value over seeded users."""
    rng = np.random.default_rng(seed)
    ctxs = [world.user(rng) for _ in range(users)]
    means = [float(np.mean([true_value(world, c, o) for c in ctxs])) for o in world.offers]
    return world.offers[int(np.argmax(means))]


def entry_of(offer: SimOffer, text: tuple[str, str], features: bool = True) -> CatalogueEntry:
    """The offer's catalogue entry: its text and payout, and with ``features`` the
    simulator's features, category and advertiser (without: the heads know the offer by
    its id and the words of its text only)."""
    body: dict[str, object] = {"title": text[0], "description": text[1],
                               "payout": offer.payout}
    if features:
        body.update(features=offer.features(), category=offer.category,
                    advertiser=offer.brand)
    return parse_entry(offer.id, body)


@dataclass(frozen=True)
class Market:
    """The world with the near-copy added, its catalogue and its encoded offers."""

    world: World
    original: SimOffer
    copy: SimOffer
    entries: dict[str, CatalogueEntry]
    offers: dict[str, Offer]

    @classmethod
    def make(cls, features: bool = True) -> Market:
        world = World(seed=WORLD_SEED)
        original = best_value_offer(world)
        entries = {o.id: entry_of(o, text_of(o), features) for o in world.offers}
        copy = world.add_offer(original.category, original.effect, original.brand,
                               original.payout, original.conversion)
        entries[copy.id] = entry_of(copy, paraphrase_of(original), features)
        offers = {i: entry_offer(e, LIMITS) for i, e in entries.items()}
        return cls(world, original, copy, entries, offers)


def step(policy: ValuePolicy, world: World, offers: Sequence[SimOffer],
         encoded: Mapping[str, Offer], stats: OfferStats, rng: np.random.Generator,
         event_id: str) -> None:
    """One decision among ``K`` of ``offers``, its outcome from the world's truth, learned
    at its logged probability and counted in ``stats``."""
    ctx = world.user(rng)
    idx = rng.choice(len(offers), size=K, replace=False)
    eligible = [offers[int(i)] for i in idx]
    req = DecideRequest(event_id, encode_context(ctx), tuple(encoded[o.id] for o in eligible))
    d = policy.decide(req)
    i, p = d.order[0], d.probabilities[0]
    shown = eligible[i]
    clicked = rng.random() < world.click_probability(ctx, shown)
    value = shown.payout if clicked and rng.random() < shown.conversion else 0.0
    policy.learn(req.context, req.offers, i, {KIND: value}, p)
    stats.add(shown.id, value, p)


@dataclass(frozen=True)
class Warm:
    """The warmed-up head (VW file) and the offer statistics after ``WARM`` decisions."""

    model: bytes
    stats: dict[str, list[float]]


def _policy(head: Head, seed: int) -> ValuePolicy:
    heads = Heads({KIND: head})
    return ValuePolicy(heads, Objective.parse(OBJECTIVE, heads.kinds),
                       Exploration.parse(EXPLORE), seed)


def warm_up(market: Market, seed: int, n: int = WARM) -> Warm:
    """``n`` decisions over the original offers (no near-copy yet)."""
    policy = _policy(Head.fresh(KIND, SPEC, seed), seed)
    stats = OfferStats()
    rng = np.random.default_rng(seed + 100)
    known = [o for o in market.world.offers if o.id != market.copy.id]
    for t in range(n):
        step(policy, market.world, known, market.offers, stats, rng, f"w{seed}-{t}")
    warm = Warm(model_bytes(policy.heads.by_kind[KIND].model), stats.snapshot())
    policy.heads.close()
    return warm


def probes(market: Market, seed: int, n: int = PROBES) -> list[DecideRequest]:
    """``n`` greedy requests where the near-copy is truly the best offer (the original
    not offered)."""
    rng = np.random.default_rng(seed + 300)
    world, copy = market.world, market.copy
    others = [o for o in world.offers if o.id not in (market.original.id, copy.id)]
    out: list[DecideRequest] = []
    while len(out) < n:
        ctx = world.user(rng)
        idx = rng.choice(len(others), size=K - 1, replace=False)
        rest = [others[int(i)] for i in idx]
        best = true_value(world, ctx, copy)
        if best < max(true_value(world, ctx, o) for o in rest):
            continue
        rest.insert(int(rng.integers(K)), copy)
        out.append(DecideRequest(f"probe{len(out)}", encode_context(ctx),
                                 tuple(market.offers[o.id] for o in rest), explore=False))
    return out


def win_share(policy: ValuePolicy, requests: Sequence[DecideRequest], offer_id: str) -> float:
    """The share of ``requests`` whose greedy first offer is ``offer_id``."""
    wins = sum(r.offers[policy.decide(r).order[0]].id == offer_id for r in requests)
    return wins / len(requests)


@dataclass(frozen=True)
class Arm:
    """One arm's time-to-win (None: not within the horizon) and its win shares by check."""

    time_to_win: int | None
    shares: tuple[float, ...]
    impressions: int  # the near-copy's, up to the win (or the horizon)
    blended: int  # decisions' offers given a cold-start prior (0 without embeddings)


def run_arm(market: Market, warm: Warm, seed: int, embeddings: OfferEmbeddings | None,
            horizon: int = HORIZON, every: int = EVERY,
            probe_requests: Sequence[DecideRequest] | None = None,
            neighbours: int = NEIGHBOURS) -> Arm:
    """From the warm head, decide and learn with the near-copy in the world until it wins
    (checked every ``every`` decisions) or ``horizon`` decisions pass; with
    ``embeddings``, the prior from the ``neighbours`` nearest known offers."""
    policy = _policy(Head(KIND, model_from(warm.model)), seed)
    stats = OfferStats.restore(warm.stats)
    cold: ColdStart | None = None
    if embeddings is not None:
        cold = ColdStart(embeddings, lambda: market.entries, lambda e: market.offers[e.id],
                         lambda: 1, new_below=NEW_BELOW, k=neighbours)
        cold.stats = stats
        policy.priors = cold
    reqs = probe_requests if probe_requests is not None else probes(market, seed)
    rng = np.random.default_rng(seed + 200)
    shares: list[float] = []
    won: int | None = None
    try:
        for t in range(horizon + 1):
            if t % every == 0:
                shares.append(win_share(policy, reqs, market.copy.id))
                if shares[-1] >= WIN_SHARE:
                    won = t
                    break
            if t < horizon:
                step(policy, market.world, market.world.offers, market.offers, stats, rng,
                     f"n{seed}-{t}")
    finally:
        policy.heads.close()
    return Arm(won, tuple(shares), stats.impressions(market.copy.id),
               cold.blended if cold is not None else 0)


@dataclass(frozen=True)
class Measurement:
    seed: int
    with_embeddings: Arm
    without: Arm


def measure(seed: int, embeddings: OfferEmbeddings, market: Market | None = None,
            warm: int = WARM, horizon: int = HORIZON,
            neighbours: int = NEIGHBOURS) -> Measurement:
    """Both arms for one seed (head, warm-up traffic, later traffic and probes)."""
    market = market or Market.make()
    w = warm_up(market, seed, warm)
    reqs = probes(market, seed)
    return Measurement(seed, run_arm(market, w, seed, embeddings, horizon,
                                     probe_requests=reqs, neighbours=neighbours),
                       run_arm(market, w, seed, None, horizon, probe_requests=reqs))


def _fmt(t: int | None, horizon: int) -> str:
    return f"> {horizon}" if t is None else str(t)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--warm", type=int, default=WARM)
    ap.add_argument("--horizon", type=int, default=HORIZON)
    ap.add_argument("--text-only", action="store_true",
                    help="catalogue entries with text and payout only (no features)")
    ap.add_argument("--neighbours", type=int, default=NEIGHBOURS,
                    help="known offers the prior borrows from (ColdStart's k)")
    args = ap.parse_args(argv)
    market = Market.make(features=not args.text_only)
    print(f"original {market.original.id} ({market.original.category}, payout "
          f"{market.original.payout}); near-copy {market.copy.id}")
    emb = OfferEmbeddings()
    rows = []
    for s in args.seeds:
        m = measure(s, emb, market, args.warm, args.horizon, args.neighbours)
        rows.append(m)
        print(f"seed {s}: with embeddings {_fmt(m.with_embeddings.time_to_win, args.horizon)}"
              f" (share at 0: {m.with_embeddings.shares[0]:.2f}, impressions "
              f"{m.with_embeddings.impressions}); without "
              f"{_fmt(m.without.time_to_win, args.horizon)} (share at 0: "
              f"{m.without.shares[0]:.2f}, impressions {m.without.impressions})", flush=True)
    for name in ("with_embeddings", "without"):
        ts = [getattr(m, name).time_to_win for m in rows]
        known = [t for t in ts if t is not None]
        med = statistics.median([t if t is not None else float("inf") for t in ts])
        print(f"{name}: median {med}, range {min(known) if known else '-'}–"
              f"{max(known) if known else '-'}, not won {ts.count(None)}")


if __name__ == "__main__":
    main()
