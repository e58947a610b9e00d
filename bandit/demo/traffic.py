"""Simulated clients: ask the server to decide, click with the world's true probability.

The server never sees the truth; the driver scores each decision with the world's
known click probability (``Tally``) so CTR curves are exact rather than noisy, and
sends a reward for every sampled click, as a real client would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np

from bandit.demo.simulator import Tally, World


@dataclass
class Window:
    """One reporting window of simulated traffic."""

    index: int
    tally: Tally
    model_version: str | None
    seconds: float


class TrafficDriver:
    def __init__(self, base_url: str, world: World, *, seed: int = 1, offers_per_request: int = 10,
                 rate: float = 0.0, timeout: float = 10.0) -> None:
        self.world = world
        self.rng = np.random.default_rng(seed)
        self.k = offers_per_request
        self.rate = rate
        self.client = httpx.Client(base_url=base_url, timeout=timeout)
        self.errors = 0

    def one(self, tally: Tally) -> str | None:
        body, offers = self.world.request(self.rng, self.k)
        r = self.client.post("/v1/decide", json=body)
        if r.status_code != 200:
            self.errors += 1
            return None
        out = r.json()
        chosen = out["slots"][0]["id"]
        probs = self.world.probabilities(body["context"], offers)
        p = float(probs[[o.id for o in offers].index(chosen)])
        clicked = bool(self.rng.random() < p)
        tally.add(p, probs, clicked)
        if clicked:
            rr = self.client.post("/v1/rewards", json={"event_id": out["event_id"],
                                                       "reward": 1.0, "kind": "click"})
            if rr.status_code != 202:
                self.errors += 1
        return str(out.get("model_version"))

    def windows(self, per_window: int, max_windows: int | None = None) -> Iterator[Window]:
        i = 0
        while max_windows is None or i < max_windows:
            tally = Tally()
            start = time.monotonic()
            version = None
            for _ in range(per_window):
                t0 = time.monotonic()
                version = self.one(tally) or version
                if self.rate > 0:
                    pause = 1.0 / self.rate - (time.monotonic() - t0)
                    if pause > 0:
                        time.sleep(pause)
            yield Window(i, tally, version, time.monotonic() - start)
            i += 1

    def close(self) -> None:
        self.client.close()
