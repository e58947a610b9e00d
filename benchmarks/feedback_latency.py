"""Feedback latency: from a reward accepted by the server to decisions served by a
model that has learned it, with default settings, under steady background traffic.

Starts broker, server and learner (the default ``BANDIT_CHECKPOINT_SECONDS`` and
``BANDIT_MODEL_POLL``), plays ``--rate`` req/s of simulated traffic, and every
``--every`` seconds sends a probe: a decision, then a reward (t0 = the 202). The
learner writes each learned event to ``offers.joined``; a reader notes when the
probe appears there (t_learn, an upper bound on when it was learned). The first
model version published at or after t_learn is the first that reflects it; the
first decision served with that version or a later one is t_served.
Latency = t_served − t0. Prints JSON with the median and p90 over the probes.

Also the time to the first learned model: from the first decision of a fresh stack to
the first decision served by a model that has learned something, in seconds and in
decisions. ``--baseline`` runs the same again in the same invocation with the former
cadence (no early models, ``BANDIT_CHECKPOINT_FIRST_EVENTS=0``; servers polling every
2 s) for the ratio.

Target: median ≤ 5 s (the Decision Service paper reports 7.3 s).

    python benchmarks/feedback_latency.py [--probes 20] [--rate 100] [--baseline] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bandit.config.settings import Settings  # noqa: E402
from bandit.demo.simulator import World  # noqa: E402
from bandit.demo.stack import Stack  # noqa: E402
from bandit.streaming import kafka_client  # noqa: E402


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--every", type=float, default=1.5, help="seconds between probes")
    ap.add_argument("--rate", type=float, default=100.0, help="background requests/s")
    ap.add_argument("--baseline", action="store_true",
                    help="also measure the former cadence (no early models, 2 s polls)")
    ap.add_argument("--quick", action="store_true", help="5 probes, for a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.probes = 5
    out = measure(args, Settings())  # the defaults under test
    if args.baseline:
        before = measure(args, replace(Settings(), checkpoint_first_events=0, model_poll=2.0))
        out["baseline_former_cadence"] = before
        out["ratios"] = {
            "median_vs_former": round(out["median_s"] / before["median_s"], 3),
            "first_learned_model_s_vs_former": round(
                out["first_learned_model_s"] / before["first_learned_model_s"], 3)
            if out["first_learned_model_s"] and before["first_learned_model_s"] else None}
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


def measure(args: argparse.Namespace, d: Settings) -> dict[str, object]:
    world = World(seed=2)
    served: list[tuple[float, int]] = []  # (wall time, model version) of each decision
    learned_at: dict[str, float] = {}
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(tmp, policy=d.policy, reward_wait=d.reward_wait,
                      checkpoint_seconds=d.checkpoint_seconds, model_poll=d.model_poll,
                      extra_env={"BANDIT_CHECKPOINT_FIRST_EVENTS":
                                 str(d.checkpoint_first_events),
                                 "BANDIT_MODEL_KEEP": "100000"})  # every version listed
        stack.start()
        try:
            stack.wait_learner()  # a learner that runs already, as in a deployment
            def background() -> None:
                rng = np.random.default_rng(3)
                with httpx.Client(base_url=stack.base, timeout=10) as c:
                    end = time.monotonic() + 600
                    while not stop.is_set() and time.monotonic() < end:
                        t = time.monotonic()
                        body, offers = world.request(rng, 10)
                        r = c.post("/v1/decide", json=body)
                        if r.status_code == 200:
                            out = r.json()
                            served.append((time.time(), int(out["model_version"])))
                            p = world.click_probability(body["context"],
                                                        world.by_id(out["slots"][0]["id"]))
                            if rng.random() < p:
                                c.post("/v1/rewards", json={"event_id": out["event_id"],
                                                            "reward": 1.0})
                        pause = 1 / args.rate - (time.monotonic() - t)
                        if pause > 0:
                            time.sleep(pause)

            def joined_reader() -> None:
                c = kafka_client.consumer(stack.bootstrap, "latency-probe")
                topic = "offers.joined"
                parts = []
                while not parts and not stop.is_set():
                    parts = kafka_client.topic_partitions(c, topic)
                c.assign([kafka_client.TopicPartition(topic, p, kafka_client.OFFSET_BEGINNING)
                          for p in parts])
                while not stop.is_set():
                    for m in c.consume(1000, 0.05):
                        if m.error() is None and (m.key() or b"").startswith(b"probe-"):
                            learned_at.setdefault(m.key().decode(), time.time())
                c.close()

            threads = [threading.Thread(target=background), threading.Thread(target=joined_reader)]
            for t in threads:
                t.start()
            time.sleep(3)  # a first model and steady traffic
            probes: dict[str, float] = {}
            with httpx.Client(base_url=stack.base, timeout=10) as c:
                rng = np.random.default_rng(4)
                for i in range(args.probes):
                    body, _ = world.request(rng, 10, event_id=f"probe-{i}")
                    assert c.post("/v1/decide", json=body).status_code == 200
                    r = c.post("/v1/rewards", json={"event_id": f"probe-{i}", "reward": 1.0})
                    assert r.status_code == 202
                    probes[f"probe-{i}"] = time.time()
                    time.sleep(args.every)
            time.sleep(d.checkpoint_seconds + d.model_poll + 3)
            stop.set()
            for t in threads:
                t.join(30)
            versions = []
            learned_by_version = {}
            for f in sorted((Path(tmp) / "models").glob("model-*.json")):
                m = orjson.loads(f.read_bytes())
                versions.append((_epoch(m["created_at"]), int(m["version"])))
                learned_by_version[int(m["version"])] = int(m["events_learned"])
        finally:
            stop.set()
            stack.stop()
    latencies = []
    for eid, t0 in probes.items():
        t_learn = learned_at.get(eid)
        if t_learn is None:
            continue
        v = next((ver for created, ver in versions if created >= t_learn - 0.001), None)
        if v is None:
            continue
        t_served = next((t for t, ver in served if ver >= v and t >= t0), None)
        if t_served is not None:
            latencies.append(t_served - t0)
    med = statistics.median(latencies) if latencies else float("nan")
    first = next((k for k, (_, ver) in enumerate(served)
                  if learned_by_version.get(ver, 0) > 0), None)
    return {
        "benchmark": "feedback_latency", "cpus": os.cpu_count(),
        "checkpoint_seconds": d.checkpoint_seconds, "model_poll": d.model_poll,
        "checkpoint_first_events": d.checkpoint_first_events,
        "first_learned_model_s": round(served[first][0] - served[0][0], 3)
        if first is not None else None,
        "first_learned_model_at_decision": first,
        "background_rps": args.rate, "probes": len(probes), "measured": len(latencies),
        "median_s": round(med, 3),
        "p90_s": round(float(np.percentile(latencies, 90)), 3) if latencies else None,
        "max_s": round(max(latencies), 3) if latencies else None,
        "target_median_le_5s": med <= 5.0,
    }


if __name__ == "__main__":
    main()
