"""What the learner writes to Kafka: joined events and dead letters.

The producer never gives a message up (:func:`bandit.streaming.kafka_client.keep_trying`): it
waits in the client's queue however long the broker is away, and a checkpoint waits
for every message before it (:meth:`Outputs.flush`), so its offsets never pass an
output that could still be lost.
"""

from __future__ import annotations

import logging
from typing import Any

from bandit.streaming import kafka_client
from bandit.streaming.topics import Topics

log = logging.getLogger("bandit.learner")


class Outputs:
    """The producer of ``offers.joined`` and the dead-letter topic."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self.producer: Any = None
        self.errors = 0  # joined/dead-letter messages Kafka refused for good

    def connect(self, bootstrap: str, compression: str) -> None:
        self.producer = kafka_client.producer(
            bootstrap, compression, **{"linger.ms": 20, **kafka_client.keep_trying(self._refused)})

    def joined(self, key: bytes, value: bytes) -> None:
        self.produce(self.topics.joined, key, value)

    def dead_letter(self, topic: str, m: Any, reason: str) -> None:
        """Send message ``m`` of ``topic``, which could not be decoded, to the dead-letter
        topic with where it came from and why."""
        log.warning("dead-lettering %s[%d]@%d: %s", topic, m.partition(), m.offset(), reason)
        self.produce(self.topics.deadletter, m.key(), m.value() or b"",
                     [("source", f"{topic}:{m.partition()}:{m.offset()}".encode()),
                      ("error", reason.encode("utf-8", "replace")[:1000])])

    def produce(self, topic: str, key: bytes | None, value: bytes,
                headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        if not kafka_client.send(self.producer, topic, key, value, headers):
            self.errors += 1

    def poll(self) -> None:
        """Serve delivery reports."""
        self.producer.poll(0)

    def flush(self) -> None:
        """Wait until the broker has every joined and dead-letter message so far."""
        kafka_client.flush_all(self.producer, "joined/dead-letter messages")

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(5)
            self.producer = None

    def _refused(self, err: Any, msg: Any) -> None:
        self.errors += 1
        log.error("Kafka refused a message for %s: %s", msg.topic(), err)
