"""Reading topics back in tests (real broker, real client)."""

from __future__ import annotations

import time

import orjson
from kafka import KafkaConsumer, TopicPartition


def read_topic(bootstrap: str, topic: str, expect: int | None = None,
               timeout: float = 30.0, raw: bool = False) -> list:
    """Every message of ``topic`` (waits until ``expect`` arrived or ``timeout``)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout
        parts = c.partitions_for_topic(topic)
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            c.poll(0)
            parts = c.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or [])]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list = []
        idle_until = None
        while time.monotonic() < deadline:
            batch = c.poll(timeout_ms=300, max_records=10000)
            for msgs in batch.values():
                out += [m.value if raw else orjson.loads(m.value) for m in msgs]
            if expect is not None and len(out) >= expect:
                break
            if expect is None:
                if batch:
                    idle_until = None
                elif idle_until is None:
                    idle_until = time.monotonic() + 1.0
                elif time.monotonic() > idle_until:
                    break
        return out
    finally:
        c.close()


def produce(bootstrap: str, topic: str, items: list[tuple[str, bytes]],
            headers: list[list[tuple[str, bytes]] | None] | None = None) -> None:
    """Produce with an independent client (kafka-python), not the service's own."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks=1, enable_idempotence=False,
                      linger_ms=5, batch_size=1 << 18)
    for i, (key, value) in enumerate(items):
        p.send(topic, key=key.encode(), value=value,
               headers=headers[i] if headers is not None else None)
    p.flush(timeout=30)
    p.close(timeout=5)
