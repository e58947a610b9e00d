"""Fetch gaps of the embedded broker: several producers (as the servers' shippers) write
to one partition while two consumers tail it in the same run, configured as the
learner's consumer. A fetch that returns a later producer batch before an earlier one
can be read skips offsets; ``moving_on`` goes past such a gap (as the learner did),
``reading_again`` reads through :class:`bandit.streaming.gaps.Gapless`, which goes
back to the first offset missing (as the learner and replay do). Afterwards every
gap's first offsets are read once more, to show the records are there. Prints JSON:
records produced, and for each consumer the records read, the gaps met and the records
never read; for ``reading_again`` also how long each gap took to fill.

    python benchmarks/fetch_gaps.py [--seconds 150] [--producers 3] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bandit.demo.stack import free_port  # noqa: E402
from bandit.streaming import kafka_client  # noqa: E402
from bandit.streaming.broker import EmbeddedBroker  # noqa: E402
from bandit.streaming.gaps import Gapless  # noqa: E402

TOPIC = "gaps.decisions"
BATCH = 50  # messages queued at once by a producer, then 20 ms of pause
VALUE = b'{"x":"' + b"y" * 3000 + b'"}'  # about a decision event's size


def produce(bootstrap: str, who: str, seconds: float, counts: Any) -> None:
    p = kafka_client.producer(bootstrap)
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(BATCH):
            kafka_client.send(p, TOPIC, f"{who}-{n}".encode(), VALUE)
            n += 1
        p.poll(0)
        time.sleep(0.02)
    p.flush(60)
    counts.put(n)


class Tail:
    """A consumer reading the topic's one partition from the start, noting gaps."""

    def __init__(self, bootstrap: str, name: str, read_again: bool) -> None:
        self.consumer = kafka_client.consumer(bootstrap, f"gaps-{name}")
        self.consumer.assign([kafka_client.TopicPartition(TOPIC, 0,
                                                          kafka_client.OFFSET_BEGINNING)])
        self.read_again = read_again
        self.read = 0
        self.gaps: list[tuple[int, int]] = []
        self.fill_seconds: list[float] = []
        self._open: tuple[int, float] | None = None  # the gap being read again, since when

    def run(self, until: threading.Event) -> None:
        if self.read_again:
            self._read_again(until)
        else:
            self._move_on(until)
        self.consumer.close()

    def _move_on(self, until: threading.Event) -> None:
        expected: int | None = None
        while not until.is_set():
            for m in self.consumer.consume(5000, 0.2):
                offset = m.offset()
                if m.error() is not None or offset is None:
                    continue
                if expected is not None and offset > expected:
                    self.gaps.append((expected, offset))
                expected = offset + 1
                self.read += 1

    def _read_again(self, until: threading.Event) -> None:
        reader = Gapless(self.consumer, kafka_client.GAP_SECONDS)
        while not until.is_set():
            messages = reader.consume(5000, 0.2)
            now = time.monotonic()
            if self._open is not None and \
                    any(g.first == self._open[0] for g in reader.given_up):
                self._open = None  # given up, not filled (never_read says so)
            for _, _, first in reader.open_gaps():
                if self._open is None or self._open[0] != first:
                    self.gaps.append((first, -1))
                    self._open = (first, now)
            if self._open is not None and not reader.reading_gap:
                self.fill_seconds.append(now - self._open[1])
                self._open = None
            reader.given_up.clear()
            self.read += sum(1 for m in messages if m.error() is None)


def there(bootstrap: str, offset: int) -> bool:
    """Whether reading from ``offset`` now returns the record at ``offset``."""
    c = kafka_client.consumer(bootstrap, "gaps-check")
    c.assign([kafka_client.TopicPartition(TOPIC, 0, offset)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for m in c.consume(10, 0.5):
                if m.error() is None:
                    return m.offset() == offset
        return False
    finally:
        c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--producers", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="10 s, for a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.seconds = 10.0
    with tempfile.TemporaryDirectory() as tmp, \
            EmbeddedBroker(free_port(), log_path=Path(tmp) / "broker.log") as broker:
        kafka_client.create_topics(broker.bootstrap, [TOPIC], 1)
        ctx = multiprocessing.get_context("spawn")
        counts = ctx.Queue()
        producers = [ctx.Process(target=produce, args=(broker.bootstrap, f"p{i}", args.seconds,
                                                       counts))
                     for i in range(args.producers)]
        tails = {"moving_on": Tail(broker.bootstrap, "moving-on", read_again=False),
                 "reading_again": Tail(broker.bootstrap, "reading-again", read_again=True)}
        stop = threading.Event()
        threads = [threading.Thread(target=t.run, args=(stop,)) for t in tails.values()]
        for t in threads:
            t.start()
        for p in producers:
            p.start()
        produced = sum(counts.get(timeout=args.seconds + 120) for _ in producers)
        for p in producers:
            p.join()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and \
                tails["reading_again"].read < produced:  # let both catch up
            time.sleep(0.5)
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
        gaps = sorted({g for t in tails.values() for g in t.gaps})
        out: dict[str, Any] = {
            "benchmark": "fetch_gaps", "seconds": args.seconds, "producers": args.producers,
            "partitions": 1, "produced": produced,
            "gap_records_there_afterwards": all(there(broker.bootstrap, g[0])
                                                for g in gaps[:5]) if gaps else None,
        }
        for name, t in tails.items():
            out[name] = {"read": t.read, "gaps": len(t.gaps), "never_read": produced - t.read}
        fills = tails["reading_again"].fill_seconds
        if fills:
            out["reading_again"]["fill_seconds"] = {
                "median": round(float(np.median(fills)), 4), "max": round(max(fills), 4)}
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
