"""A small, fast HTTP/1.1 load generator (asyncio streams, keep-alive, no client
library in the hot path) for open-loop latency and closed-loop peak throughput.

Open loop: request *i* is due at ``start + i / rate`` whatever happened before;
latency is measured from the due time, so a stalled server is charged for the
queue it causes (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def build_request(path: str, body: bytes, host: str = "127.0.0.1") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


@dataclass
class Result:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, float]:
        a = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        return {"requests": len(self.latencies_ms), "errors": self.errors,
                "p50_ms": round(float(np.percentile(a, 50)), 3),
                "p99_ms": round(float(np.percentile(a, 99)), 3),
                "p999_ms": round(float(np.percentile(a, 99.9)), 3),
                "max_ms": round(float(a.max()), 3),
                "throughput_rps": round(len(self.latencies_ms) / self.seconds, 1)
                if self.seconds else 0.0}


async def _open(host: str, port: int, n: int) -> asyncio.Queue:
    q: asyncio.Queue = asyncio.Queue()
    for _ in range(n):
        q.put_nowait(await asyncio.open_connection(host, port))
    return q


async def open_loop(host: str, port: int, requests: list[bytes] | Callable[[int], bytes],
                    rate: float, seconds: float, connections: int = 64,
                    stamps: list[float] | None = None) -> Result:
    pool = await _open(host, port, connections)
    res = Result()
    total = int(rate * seconds)
    start = time.perf_counter()

    async def one(i: int, due: float) -> None:
        conn = await pool.get()
        try:
            req = requests(i) if callable(requests) else requests[i % len(requests)]
            status = await _roundtrip(*conn, req)
            if status >= 400:
                res.errors += 1
            res.latencies_ms.append((time.perf_counter() - due) * 1000)
            if stamps is not None:
                stamps.append(due - start)
        except (OSError, asyncio.IncompleteReadError):
            res.errors += 1
            conn = await asyncio.open_connection(host, port)
        finally:
            pool.put_nowait(conn)

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 60)
    res.seconds = time.perf_counter() - start
    while not pool.empty():
        _, w = pool.get_nowait()
        w.close()
    return res


async def closed_loop(host: str, port: int, requests: list[bytes], seconds: float,
                      connections: int = 16) -> Result:
    res = Result()
    end = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        r, w = await asyncio.open_connection(host, port)
        i = k
        try:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                status = await _roundtrip(r, w, requests[i % len(requests)])
                if status >= 400:
                    res.errors += 1
                res.latencies_ms.append((time.perf_counter() - t0) * 1000)
                i += connections
        finally:
            w.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(connections)))
    res.seconds = time.perf_counter() - start
    return res
