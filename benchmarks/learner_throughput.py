"""Learner throughput: joined-and-learned events/s from pre-filled topics, against
VW's own C++ DSJSON reader learning the same joined events, in one run.

Pre-fills the embedded broker with ``--events`` decisions (20 offers each, the
simulator's features, logged by a uniform policy) and one reward per decision,
then, round after round (``--rounds``), times a fresh learner daemon (its own model
directory, reading both topics from the start) from its first poll until every
decision is joined, learned and written to ``offers.joined``. The same joined lines
are written to a file and learned by VW's own driver (``--dsjson --cb_explore_adf
-d FILE``, what ``vw`` does on the command line) just before and just after each
learner round; a round's baseline is the faster of the two, so a slow spell of this
shared machine during one of them does not flatter the learner (the ratio is
conservative). The ratio is the median of the rounds' ratios; every round is printed.
Prints JSON.

Targets: ≥ 20,000 events/s, ≥ 0.35 × raw VW.

    python benchmarks/learner_throughput.py [--events 200000] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import vowpalwabbit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bandit.config.settings import Settings  # noqa: E402
from bandit.core.events import (  # noqa: E402
    C_AT,
    decision_event,
    encode_decision,
    joined_event,
    reward_event,
)
from bandit.core.policy_spec import PolicySpec  # noqa: E402
from bandit.core.schema import RequestParser  # noqa: E402
from bandit.core.types import Decision, Reward  # noqa: E402
from bandit.demo.simulator import World  # noqa: E402
from bandit.demo.stack import free_port  # noqa: E402
from bandit.learner.daemon import Learner  # noqa: E402
from bandit.streaming import kafka_client  # noqa: E402
from bandit.streaming.broker import EmbeddedBroker  # noqa: E402
from bandit.streaming.topics import Topics, ensure_topics  # noqa: E402


def make_events(n: int, seed: int = 0) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """(event id, decision JSON, its ``c_at`` header, reward JSON) for ``n`` uniformly
    logged decisions, encoded as the server's Kafka sink encodes them."""
    world = World(n_offers=20, seed=seed)
    rng = np.random.default_rng(seed)
    parser = RequestParser(Settings())
    out = []
    for i in range(n):
        body, offers = world.request(rng, 20, event_id=f"ev{i}")
        req = parser.decide(orjson.dumps(body))
        order = [int(x) for x in rng.permutation(len(offers))]
        decision = Decision(req.event_id, tuple(order), tuple([1 / 20] * 20), 1, "0",
                            "uniform", True)
        ev = decision_event(req, decision)
        clicked = rng.random() < world.click_probability(body["context"], offers[order[0]])
        rw = reward_event(Reward(req.event_id, 1.0 if clicked else 0.0))
        value, c_at = encode_decision(ev)
        assert c_at is not None
        out.append((req.event_id.encode(), value, b"%d" % c_at, orjson.dumps(rw)))
    return out


def fill(bootstrap: str, prefix: str, events: list[tuple[bytes, bytes, bytes, bytes]]) -> float:
    t0 = time.perf_counter()
    p = kafka_client.producer(bootstrap, **{"linger.ms": 50})
    for topic, items in ((prefix + "decisions", [(k, d, [(C_AT, at)]) for k, d, at, _ in events]),
                         (prefix + "rewards", [(k, r, None) for k, _, _, r in events])):
        for key, value, headers in items:
            while True:
                try:
                    p.produce(topic, key=key, value=value, headers=headers)
                    break
                except BufferError:
                    p.poll(0.05)
    if p.flush(600):
        raise RuntimeError("the broker did not take every event")
    return time.perf_counter() - t0


def raw_vw(lines: list[bytes], args: str, work: Path) -> float:
    path = work / "joined.dsjson"
    with open(path, "wb") as f:
        for line in lines:
            f.write(line + b"\n")
    t0 = time.perf_counter()
    vowpalwabbit.Workspace(f"{args} --dsjson").finish()
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    ws = vowpalwabbit.Workspace(f"{args} --dsjson -d {path}")  # the driver learns the file
    ws.run_parser()
    seconds = time.perf_counter() - t0 - setup
    examples = ws.get_weighted_examples()
    ws.finish()
    if examples != len(lines):
        raise RuntimeError(f"VW learned {examples} of {len(lines)} examples")
    return seconds


def learner_round(s: Settings, n: int) -> tuple[float, int, float]:
    """(seconds, events learned, final checkpoint seconds) of one fresh learner."""
    learner = Learner(s)
    learner.connect()
    try:
        t0 = time.perf_counter()
        deadline = t0 + 1800
        while learner.state.counters.learned < n and time.perf_counter() < deadline:
            learner.step(timeout_ms=100)
        learner.outputs.producer.flush(timeout=120)
        learn_s = time.perf_counter() - t0
        learned = learner.state.counters.learned
        t1 = time.perf_counter()
        learner.checkpoint()
        return learn_s, learned, time.perf_counter() - t1
    finally:
        learner.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--policy", default="epsilon:0.05")
    ap.add_argument("--quick", action="store_true", help="20,000 events, one round")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.events
    rounds = 1 if args.quick else args.rounds
    t0 = time.perf_counter()
    events = make_events(n)
    gen_s = time.perf_counter() - t0
    spec = PolicySpec.parse(args.policy)
    per_round = []
    with tempfile.TemporaryDirectory() as tmp, \
            EmbeddedBroker(free_port(), log_path=Path(tmp) / "broker.log") as broker:
        work = Path(tmp)
        prefix = "bench."
        joined = [orjson.dumps(joined_event(orjson.loads(d), orjson.loads(r)["v"],
                                            [orjson.loads(r)])) for _, d, _, r in events]
        fill_s = 0.0
        for k in range(rounds):
            s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, partitions=4,
                         model_dir=str(work / f"models{k}"), policy=str(spec),
                         reward_wait=600.0)
            vw_before = raw_vw(joined, spec.vw_args(), work)
            if k == 0:
                ensure_topics(broker.bootstrap, Topics.from_settings(s), s.partitions)
                fill_s = fill(broker.bootstrap, prefix, events)
            learn_s, learned, checkpoint_s = learner_round(s, n)
            vw_after = raw_vw(joined, spec.vw_args(), work)
            eps = learned / learn_s
            vw_eps = max(n / vw_before, n / vw_after)
            per_round.append({"learned": learned, "learner_seconds": round(learn_s, 2),
                              "learner_events_per_s": round(eps, 1),
                              "final_checkpoint_seconds": round(checkpoint_s, 3),
                              "raw_vw_events_per_s_before_after":
                                  [round(n / vw_before, 1), round(n / vw_after, 1)],
                              "ratio_vs_raw_vw": round(eps / vw_eps, 3)})
    eps = float(np.median([r["learner_events_per_s"] for r in per_round]))
    ratio = float(np.median([r["ratio_vs_raw_vw"] for r in per_round]))
    vw_eps = float(np.median([max(r["raw_vw_events_per_s_before_after"]) for r in per_round]))
    print(orjson.dumps({
        "benchmark": "learner_throughput", "events": n, "rounds": rounds,
        "learned": min(r["learned"] for r in per_round),
        "offers_per_decision": 20, "policy": str(spec), "cpus": os.cpu_count(),
        "generate_seconds": round(gen_s, 2), "fill_seconds": round(fill_s, 2),
        "learner_events_per_s": round(eps, 1), "raw_vw_events_per_s": round(vw_eps, 1),
        "ratio_vs_raw_vw": round(ratio, 3), "per_round": per_round,
        "targets": {"ge_20000_per_s": eps >= 20000, "ge_0.35x_raw_vw": ratio >= 0.35},
    }, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
