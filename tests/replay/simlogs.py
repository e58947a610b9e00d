"""Joined DSJSON logs of the offer simulator, as the learner writes them, with the
true click probabilities kept beside them for ground truth."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson

from bandit.config.settings import Settings
from bandit.core.events import decision_event, joined_event
from bandit.core.schema import RequestParser
from bandit.core.types import Decision
from bandit.demo.simulator import World

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_logs(path: Path, n: int, seed: int = 0, k: int = 10, slots: int = 1,
              world: World | None = None) -> tuple[list[dict], np.ndarray]:
    """Uniformly logged decisions; returns the events and the (n, k) true click
    probabilities of each row's offers, in request order."""
    world = world or World(seed=seed)
    rng = np.random.default_rng(seed)
    parser = RequestParser(Settings())
    events, truth = [], []
    with open(path, "wb") as f:
        for i in range(n):
            body, offers = world.request(rng, k, event_id=f"e{seed}-{i}", slots=slots)
            req = parser.decide(orjson.dumps(body))
            order = [int(x) for x in rng.permutation(k)]
            probs = [1.0 / (k - j) for j in range(slots)] + [1.0 / k] * (k - slots)
            d = Decision(req.event_id, tuple(order), tuple(probs), slots, "0", "uniform",
                         True)
            ts = (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
            ev = decision_event(req, d, timestamp=ts)
            mu = world.probabilities(body["context"], offers)
            rewards = []
            for s in range(slots):
                if rng.random() < mu[order[s]]:
                    rewards.append({"EventId": req.event_id, "v": 1.0, "kind": "click",
                                    **({"slot": s + 1} if slots > 1 else {})})
            first = rewards[0]["v"] if rewards and (slots == 1 or
                                                      rewards[0].get("slot") == 1) else 0.0
            j = joined_event(ev, first, rewards)
            events.append(j)
            truth.append(mu)
            f.write(orjson.dumps(j) + b"\n")
    return events, np.array(truth)
