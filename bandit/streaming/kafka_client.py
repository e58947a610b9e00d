"""Kafka clients for the data path (librdkafka through ``confluent-kafka``).

The server's sink and the learner move every event through these. librdkafka does
the batching, compression and network I/O in its own C threads, outside the GIL, so
producing costs a request a few microseconds and the learner reads ~10× faster than
a pure-Python client would let it (see ``benchmarks/learner_throughput.py``).

Settings that matter with the embedded broker (Tansu) and with real clusters alike:
idempotence off (Tansu's idempotent producer breaks after a broker restart; consumers
deduplicate by ``EventId`` instead), ``acks=1``, bounded delivery timeouts so an
outage surfaces as an error the spool can handle instead of an endless retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

log = logging.getLogger("bandit.kafka")

__all__ = ["GAP_SECONDS", "OFFSET_BEGINNING", "Consumer", "KafkaError", "KafkaException",
           "Producer", "TopicPartition", "admin", "consumer", "create_topics", "producer",
           "topic_partitions"]


def _common(bootstrap: str) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "logger": log,
            "log.connection.close": False, "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000, "socket.timeout.ms": 10000}


def producer(bootstrap: str, compression: str = "lz4", **overrides: Any) -> Producer:
    """A producer; ``compression`` of its batches (``BANDIT_KAFKA_COMPRESSION``): the
    events are JSON with the same offers over and over, which lz4 shrinks about
    eightfold for little CPU, and the broker then stores and serves far fewer bytes."""
    conf = {**_common(bootstrap), "acks": 1, "enable.idempotence": False,
            "linger.ms": 5, "message.timeout.ms": 10000, "compression.type": compression,
            "queue.buffering.max.messages": 200000, **overrides}
    return Producer(conf)


def keep_trying(on_error: Callable[[Any, Any], None]) -> dict[str, Any]:
    """Settings for a producer whose messages must never be given up (the learner's
    outputs): they wait in the client's queue until the broker takes them, however long
    it is away; ``on_error(error, message)`` hears of one the broker refuses for good."""
    return {"message.timeout.ms": 0, "delivery.report.only.error": True,
            "on_delivery": on_error}


def send(p: Producer, topic: str, key: bytes | None, value: bytes,
         headers: list[tuple[str, str | bytes | None]] | None = None) -> bool:
    """Queue one message, waiting while the client's queue is full; False (logged) if
    the client refuses it outright (larger than the broker takes, say)."""
    while True:
        try:
            p.produce(topic, value=value, key=key, headers=headers)
            return True
        except BufferError:  # the queue is full: let it drain
            p.poll(0.05)
        except KafkaException as exc:
            log.error("not sent to %s (%d bytes): %s", topic, len(value), exc)
            return False


def flush_all(p: Producer, what: str, wait: float = 30.0) -> None:
    """Wait until the broker has taken every queued message, saying so every ``wait``
    seconds (a producer made with :func:`keep_trying` never drops them)."""
    while left := p.flush(wait):
        log.warning("%d %s not yet taken by Kafka; waiting", left, what)


# how long a consumer reads a gap in a partition's offsets again before it gives up (the
# service's topics run on without gaps, but the embedded broker can answer a fetch with
# a producer's batch before an earlier one is readable: benchmarks/fetch_gaps.py)
GAP_SECONDS = 3.0


def consumer(bootstrap: str, group: str, **overrides: Any) -> Consumer:
    """A consumer. Its fetch queue backs off 20 ms, not librdkafka's 1 s, once full: a
    reader faster than one fetch per partition (the learner catching up) otherwise
    empties the queue and waits out the rest of the second (measured: 10% of the
    learner's time reading a backlog)."""
    conf = {**_common(bootstrap), "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
            "fetch.queue.backoff.ms": 20, "enable.partition.eof": False, **overrides}
    return Consumer(conf)


def admin(bootstrap: str) -> AdminClient:
    return AdminClient(_common(bootstrap))


def topic_partitions(client: Any, topic: str, timeout: float = 10.0) -> list[int]:
    """Partition ids of ``topic`` (empty when it does not exist)."""
    md = client.list_topics(topic, timeout=timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return []
    return sorted(t.partitions)


def create_topics(bootstrap: str, names: list[str], partitions: int,
                  timeout: float = 15.0) -> list[str]:
    """Create the topics that do not exist yet; return the ones created."""
    a = admin(bootstrap)
    existing = set(a.list_topics(timeout=timeout).topics)
    missing = [t for t in names if t not in existing]
    if not missing:
        return []
    futures = a.create_topics([NewTopic(t, partitions, 1) for t in missing],
                              operation_timeout=timeout, request_timeout=timeout)
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout)
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:  # created concurrently: fine
                raise
    return created
