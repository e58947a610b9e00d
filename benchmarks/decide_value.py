"""Decide with value-aware ranking, offers named by catalogue id and cold-start
embeddings, against today's inline decide, in one run.

Each variant is the server's own decide handler (the one ``FastRoutes`` calls:
parse → catalogue → assign → constrain → decide → event → reply), in this process,
with a file event sink (every decision encoded and written) and a model store:

* ``inline`` (the baseline): value-aware ranking off, 20 offers sent inline;
* ``inline_value``: ``BANDIT_OBJECTIVE="click + 5 * conversion * payout"`` over three
  VW heads, the same inline offers;
* ``catalogue_ids``: the same objective, the 20 offers named by catalogue id (features,
  title, description and payout from the catalogue);
* ``catalogue_ids_embeddings`` (the headline: every part on): as ``catalogue_ids`` with
  cold-start priors, 10 of the 20 offers new (no impressions) and borrowing their
  neighbours' predictions through WordLlama embeddings of their text.

Payload: 256 requests, a 10-feature context that changes per request. Rounds
alternate the variants (a slow spell of this shared machine falls on all of them);
figures are per-decision microseconds (median of the rounds, min–max), and each
variant's ratio to ``inline`` per round. Prints one JSON object. No HTTP or network:
this isolates what the value-aware path adds to a decision (``decide_latency.py``
measures the HTTP server).

    python benchmarks/decide_value.py [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from prometheus_client import CollectorRegistry  # noqa: E402

from bandit.config.settings import Settings  # noqa: E402
from bandit.core.offerstats import OfferStats  # noqa: E402
from bandit.core.policy import VWPolicy  # noqa: E402
from bandit.core.policy_spec import PolicySpec  # noqa: E402
from bandit.core.vw_adapter import VWModel  # noqa: E402
from bandit.learner.heads import HeadLearner, new_window  # noqa: E402
from bandit.server.app import create_app, hot_routes  # noqa: E402
from bandit.stores.modelstore import ModelStore  # noqa: E402
from bandit.streaming.sinks import FileSink  # noqa: E402
from bandit.value.head_files import HEAD_SPEC  # noqa: E402
from bandit.value.heads import Heads  # noqa: E402

OBJECTIVE = "click + 5 * conversion * payout"
WORDS = ("rome weekend hotel flights ski alps pass dental cover teeth car rental city "
         "break beach resort spa museum tour wine tasting concert tickets").split()


def catalogue(rng: np.random.Generator, n: int = 20) -> dict[str, dict[str, Any]]:
    out = {}
    for k in range(n):
        words = [WORDS[int(i)] for i in rng.integers(len(WORDS), size=6)]
        out[f"offer-{k:02d}"] = {
            "features": {"offer": {**{f"c{j}": f"v{int(rng.integers(5))}" for j in range(5)},
                                   **{f"x{j}": round(float(rng.random()), 3)
                                      for j in range(4)}},
                         "payout": round(float(rng.uniform(1, 20)), 2)},
            "title": " ".join(words[:3]), "description": " ".join(words),
            "payout": round(float(rng.uniform(1, 20)), 2), "advertiser": f"adv{k % 4}"}
    return out


def bodies(entries: dict[str, dict[str, Any]], by_id: bool, n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    offers: list[Any] = list(entries) if by_id else \
        [{"id": k, "features": v["features"]} for k, v in entries.items()]
    out = []
    for i in range(n):
        ctx = {"user": {**{f"u{j}": f"v{int(rng.integers(20))}" for j in range(5)},
                        **{f"n{j}": round(float(rng.random()), 3) for j in range(5)}}}
        out.append(orjson.dumps({"context": ctx, "offers": offers, "event_id": f"b-{i}"}))
    return out


def publish_heads(store: ModelStore, known: list[str]) -> None:
    """Fresh heads and offer statistics where ``known`` offers have 200 impressions."""
    kinds = ("click", "conversion", "value")
    learner = HeadLearner(Heads.fresh(kinds, HEAD_SPEC), {k: new_window() for k in kinds})
    stats = OfferStats()
    for oid in known:
        for _ in range(200):
            stats.add(oid, 0.0, 0.05)
    model = VWModel(PolicySpec.parse("epsilon:0.1").vw_args(0))
    store.publish(model, "epsilon:0.1", 0,
                  extra={**learner.save(store), "offer_stats": stats.snapshot()})
    model.close()
    learner.close()


def variant(root: Path, name: str, entries: dict[str, dict[str, Any]],
            **settings: Any) -> tuple[Any, Any]:
    """A service with its own store, catalogue and event files; its decide handler."""
    d = root / name
    s = Settings(model_dir=str(d / "models"), event_dir=str(d / "events"),
                 policy="epsilon:0.1", **settings)
    s.validate()
    store = ModelStore(s.model_dir)
    if s.objective:
        publish_heads(store, list(entries)[:10])
    sink = FileSink(s.event_dir)
    app = create_app(s, VWPolicy.fresh(PolicySpec.parse(s.policy)), sink,
                     registry=CollectorRegistry(), store=store)
    svc = app.state.service
    assert svc.value_aware.offers is not None
    from bandit.value.catalogue import parse_entry

    for oid, body in entries.items():
        svc.value_aware.offers.catalogue.put(parse_entry(oid, body, time.time()))
    return hot_routes(svc)["/v1/decide"], sink


def measure(handler: Any, payload: list[bytes]) -> float:
    """Microseconds per decision over the payload (after one warm pass)."""
    for b in payload:
        status, _ = handler(b)
        assert status == 200, (status, _)
    t0 = time.perf_counter()
    for b in payload:
        handler(b)
    return (time.perf_counter() - t0) / len(payload) * 1e6


def spread(xs: list[float], digits: int = 1) -> dict[str, float]:
    return {"median": round(statistics.median(xs), digits), "min": round(min(xs), digits),
            "max": round(max(xs), digits)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rounds, n = (1, 64) if args.quick else (args.rounds, args.requests)
    entries = catalogue(np.random.default_rng(0))
    inline, ids = bodies(entries, False, n, 1), bodies(entries, True, n, 1)
    with tempfile.TemporaryDirectory(prefix="bench-value-") as tmp:
        root = Path(tmp)
        plan = {
            "inline": (variant(root, "inline", entries, cold_start="off"), inline),
            "inline_value": (variant(root, "inline_value", entries, objective=OBJECTIVE,
                                     cold_start="off"), inline),
            "catalogue_ids": (variant(root, "ids", entries, objective=OBJECTIVE,
                                      cold_start="off"), ids),
            "catalogue_ids_embeddings": (variant(root, "ids_emb", entries,
                                                 objective=OBJECTIVE, cold_start="on"), ids),
        }
        us: dict[str, list[float]] = {k: [] for k in plan}
        for _ in range(rounds):
            for name, ((handler, _sink), payload) in plan.items():
                us[name].append(measure(handler, payload))
        for (_, sink), _ in plan.values():
            sink.close()
    ratios = {f"{k}_vs_inline": spread([a / b for a, b in zip(us[k], us["inline"],
                                                               strict=True)], 2)
              for k in plan if k != "inline"}
    print(orjson.dumps({"benchmark": "decide_value", "rounds": rounds, "requests": n,
                        "offers": len(entries), "objective": OBJECTIVE,
                        "us_per_decision": {k: spread(v) for k, v in us.items()},
                        "ratios": ratios}, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
