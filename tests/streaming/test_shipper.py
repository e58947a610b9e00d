"""The shipper's two homes agree: a child process reading the spool back from disk
ships the same records as a thread taking them from the writer's memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from bandit.config.settings import Settings
from bandit.streaming import spool
from bandit.streaming.kafka_sink import KafkaSink
from bandit.streaming.shipper import DiskTail, MemoryTail
from bandit.streaming.spool import SpoolWriter


def test_the_disk_tail_reads_what_the_memory_tail_takes_while_appends_go_on(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(spool, "SEGMENT_BYTES", 4096)  # a rotation every ~40 records
    writer = SpoolWriter(tmp_path / "spool")
    memory, disk = MemoryTail(writer), DiskTail(writer.dir)
    done = threading.Event()

    def append() -> None:
        for i in range(3000):
            value = b'{"EventId":"e%d","pad":"%s"}' % (i, b"x" * (i % 97))
            writer.append("d" if i % 3 else "r", f"e{i}", value, i if i % 3 else None)
        done.set()

    t = threading.Thread(target=append)
    t.start()
    from_disk: list = []
    while True:  # read concurrently with the appends, across rotations
        finished = done.is_set()
        batch = disk.records()
        if batch:
            from_disk += batch
            disk.reader.commit(batch[-1].end, persist=False)
        elif finished:
            break
    t.join()
    taken = memory.records()
    while len(taken) < 3000:
        more = writer.take()
        assert more is not None
        taken += more
    assert len(from_disk) == 3000
    assert from_disk == taken  # kind, key, value, position and c_at, record for record
    assert writer.segment > 50  # (the shipped ones were deleted as the cursor passed them)
    writer.close()


def _messages(bootstrap: str, topic: str, expect: int) -> list[tuple]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + 30
        parts = None
        while not parts and time.monotonic() < deadline:
            c.poll(0)
            parts = c.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or [])]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list[tuple] = []
        while len(out) < expect and time.monotonic() < deadline:
            for msgs in c.poll(timeout_ms=300, max_records=10000).values():
                out += [(m.partition, m.key, m.value, tuple(m.headers or ())) for m in msgs]
        return out
    finally:
        c.close()


@pytest.mark.integration
def test_both_shippers_deliver_the_same_messages(broker, prefix, tmp_path):
    got = {}
    for mode in ("process", "thread"):
        s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"{prefix}{mode}.",
                     spool_dir=str(tmp_path / mode), shipper=mode)
        sink = KafkaSink(s)
        for i in range(500):
            sink.decision_encoded(f"e{i}", b'{"EventId":"e%d","c":[%d]}' % (i, i), 13)
            sink.reward(f"e{i}", {"EventId": f"e{i}", "v": i / 7})
        deadline = time.monotonic() + 30
        while sink.health()["spool_depth"] and time.monotonic() < deadline:
            time.sleep(0.05)
        h = sink.health()
        assert h["spool_depth"] == 0 and h["shipped"] == 1000 and h["connected"], h
        sink.close()
        assert not (tmp_path / mode).exists() or not any((tmp_path / mode).iterdir())
        got[mode] = {t: sorted(_messages(broker.bootstrap, f"{prefix}{mode}.{t}", 500))
                     for t in ("decisions", "rewards")}
        assert all(len(v) == 500 for v in got[mode].values())
    assert got["process"] == got["thread"]
    assert got["process"]["decisions"][0][3] == (("c_at", b"13"),)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_a_killed_server_takes_its_shipper_with_it_and_the_spool_stays(tmp_path):
    """The server dies (SIGKILL) with the broker away: its shipper child exits too and
    leaves the spool, locked by no one, for the next server to adopt."""
    script = textwrap.dedent(f"""
        import sys, time
        from bandit.config.settings import Settings
        from bandit.streaming.kafka_sink import KafkaSink
        sink = KafkaSink(Settings(kafka_bootstrap="127.0.0.1:9", spool_dir={str(tmp_path)!r},
                                  shipper="process"))
        for i in range(100):
            sink.reward(f"e{{i}}", {{"EventId": f"e{{i}}"}})
        print(sink.shipping.proc.pid, flush=True)
        time.sleep(60)
    """)
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    child = int(server.stdout.readline())
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _running(child):
        time.sleep(0.05)
    assert not _running(child), "the shipper outlived its server"
    adopted = spool.adopt_orphans(tmp_path)
    assert len(adopted) == 1
    reader = spool.SpoolReader(adopted[0][0], owned=False)
    assert len(reader.read(1000)) == 100
    os.close(adopted[0][1])
