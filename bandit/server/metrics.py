"""Prometheus metrics, created against an injected registry.

With several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` is set by
``bandit-serve`` and :func:`exposition` merges every worker's values, so
``/metrics`` shows totals whichever worker answers.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.decisions = Counter("bandit_decisions_total", "Decisions served",
                                 ["policy", "mode"], registry=registry)
        self.rewards = Counter("bandit_rewards_total", "Rewards accepted", ["kind"],
                               registry=registry)
        self.activations = Counter("bandit_activations_total", "Deferred decisions activated",
                                   registry=registry)
        self.errors = Counter("bandit_errors_total", "Requests refused, by error code",
                              ["code"], registry=registry)
        self.decide_latency = Histogram("bandit_decide_seconds", "Time to decide (server side)",
                                        buckets=LATENCY_BUCKETS, registry=registry)
        self.model_version = Gauge("bandit_model_version_info",
                                   "1 for the model version being served", ["version", "policy"],
                                   registry=registry, multiprocess_mode="liveall")
        self.model_swaps = Counter("bandit_model_swaps_total", "Model hot swaps by result",
                                   ["result"], registry=registry)
        self.sink_errors = Counter("bandit_sink_errors_total", "Event sink errors",
                                   registry=registry)
        self.spool_depth = Gauge("bandit_spool_depth", "Events waiting in the local spool",
                                 registry=registry, multiprocess_mode="livesum")
        self.batches = Counter("bandit_handler_batches_total",
                               "Batches of hot-route handlers run back to back",
                               registry=registry)
        self.batched = Counter("bandit_batched_handlers_total",
                               "Hot-route handlers run in those batches", registry=registry)
        self._decided: dict[tuple[str, str], Any] = {}

    def batch_ran(self, handlers: int) -> None:
        self.batches.inc()
        self.batched.inc(handlers)

    def decided(self, policy: str, mode: str) -> None:
        """Count one decision (the labelled child is looked up once per label pair)."""
        child = self._decided.get((policy, mode))
        if child is None:
            child = self._decided[policy, mode] = self.decisions.labels(policy, mode)
        child.inc()

    def set_model(self, version: str, policy: str, previous: str | None = None,
                  previous_policy: str | None = None) -> None:
        if previous is not None:
            self.model_version.labels(previous, previous_policy or policy).set(0)
        self.model_version.labels(version, policy).set(1)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The Prometheus text for ``/metrics`` (merged across workers when needed)."""
    if multiprocess_enabled():
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged), CONTENT_TYPE_LATEST
    return generate_latest(registry), CONTENT_TYPE_LATEST
