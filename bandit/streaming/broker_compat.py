"""A listener beside the embedded broker for stock Kafka tools (kcat and others built
on an older librdkafka).

Why: Tansu answers ``ApiVersions`` v3 with all four of the response's tagged fields
written out, default values included (an empty feature list, epoch -1, ...), which
the protocol allows and Apache Kafka does not do. librdkafka before 2.1 skips a tagged
field one byte short (it reads the field's size as if it were a compact length, N+1),
so it reads garbage as the next size and fails with "Read underflow" before any
request. Debian 12's kcat is built on librdkafka 2.0.2. This project's own clients
(librdkafka 2.16 through ``confluent-kafka``, kafka-python) are not affected.

What: a TCP relay (``python -m bandit.streaming.broker_compat --listen H:P --upstream H:P``) that
forwards every byte both ways and rewrites three responses: ``ApiVersions`` without
the tagged fields (and with ``FindCoordinator`` capped at v3, ``DescribeCluster``
left out, the versions it can rewrite), and ``Metadata`` and ``FindCoordinator`` with
the broker's address replaced by the relay's own, so a tool that connects here stays
here. Everything else passes unchanged. The service's own clients keep talking to the
broker directly; the relay is only for people looking at the topics.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import struct
import sys

API_VERSIONS, METADATA, FIND_COORDINATOR, DESCRIBE_CLUSTER = 18, 3, 10, 60
MAX_VERSIONS = {FIND_COORDINATOR: 3}
HIDDEN = {DESCRIBE_CLUSTER}


class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("short frame")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def i16(self) -> int:
        return int(struct.unpack(">h", self.take(2))[0])

    def i32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def string(self, flexible: bool) -> bytes | None:
        n = self.uvarint() - 1 if flexible else self.i16()
        return None if n < 0 else self.take(n)

    def tags(self) -> bytes:
        start = self.pos
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())
        return self.data[start:self.pos]


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: bytes | None, flexible: bool) -> bytes:
    if flexible:
        return _uvarint(0 if s is None else len(s) + 1) + (s or b"")
    return struct.pack(">h", -1) if s is None else struct.pack(">h", len(s)) + s


def _array_len(n: int, flexible: bool) -> bytes:
    return _uvarint(n + 1) if flexible else struct.pack(">i", n)


def rewrite_api_versions(body: bytes, version: int) -> bytes:
    """The same answer without tagged fields, capped to what the relay can rewrite."""
    r = _Reader(body, 4)  # the response header is v0 (just the correlation id) always
    flexible = version >= 3
    error = r.i16()
    n = r.uvarint() - 1 if flexible else r.i32()
    keys = []
    for _ in range(n):
        key, low, high = r.i16(), r.i16(), r.i16()
        if flexible:
            r.tags()
        if key not in HIDDEN:
            keys.append((key, low, min(high, MAX_VERSIONS.get(key, high))))
    throttle = r.i32() if version >= 1 else None
    out = [body[:4], struct.pack(">h", error), _array_len(len(keys), flexible)]
    for key, low, high in keys:
        out.append(struct.pack(">hhh", key, low, high) + (b"\x00" if flexible else b""))
    if throttle is not None:
        out.append(struct.pack(">i", throttle))
    if flexible:
        out.append(b"\x00")
    return b"".join(out)


def rewrite_metadata(body: bytes, version: int, host: bytes, port: int) -> bytes:
    """Every broker in the answer is the relay."""
    flexible = version >= 9
    r = _Reader(body, 4)
    if flexible:
        r.tags()  # response header v1
    if version >= 3:
        r.i32()  # throttle time
    head = body[:r.pos]
    n = r.uvarint() - 1 if flexible else r.i32()
    brokers = [head, _array_len(n, flexible)]
    for _ in range(n):
        node = r.i32()
        r.string(flexible)
        r.i32()
        entry = struct.pack(">i", node) + _string(host, flexible) + struct.pack(">i", port)
        if version >= 1:
            entry += _string(r.string(flexible), flexible)  # rack
        if flexible:
            entry += r.tags()
        brokers.append(entry)
    return b"".join(brokers) + body[r.pos:]


def rewrite_find_coordinator(body: bytes, version: int, host: bytes, port: int) -> bytes:
    """The coordinator is the relay (v0-v3, the versions the relay offers)."""
    flexible = version >= 3
    r = _Reader(body, 4)
    if flexible:
        r.tags()
    if version >= 1:
        r.i32()  # throttle time
    r.i16()  # error code
    if version >= 1:
        r.string(flexible)  # error message
    r.i32()  # node id
    head = body[:r.pos]
    r.string(flexible)
    r.i32()
    return head + _string(host, flexible) + struct.pack(">i", port) + body[r.pos:]


def rewrite(api: tuple[int, int], body: bytes, host: bytes, port: int) -> bytes:
    key, version = api
    try:
        if key == API_VERSIONS:
            return rewrite_api_versions(body, version)
        if key == METADATA:
            return rewrite_metadata(body, version, host, port)
        if key == FIND_COORDINATOR and version <= 3:
            return rewrite_find_coordinator(body, version, host, port)
    except (ValueError, struct.error):
        pass  # not the shape expected (e.g. an error answer in another version): as is
    return body


async def _frames(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(4)
    return await reader.readexactly(int.from_bytes(head, "big", signed=True))


async def _relay(client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 upstream: tuple[str, int], me: tuple[bytes, int]) -> None:
    c_reader, c_writer = client
    try:
        u_reader, u_writer = await asyncio.open_connection(*upstream)
    except OSError:
        c_writer.close()
        return
    pending: dict[int, tuple[int, int]] = {}

    async def requests() -> None:
        while True:
            body = await _frames(c_reader)
            key, version, corr = struct.unpack_from(">hhi", body)
            if key in (API_VERSIONS, METADATA, FIND_COORDINATOR):
                pending[corr] = (key, version)
            u_writer.write(len(body).to_bytes(4, "big") + body)
            await u_writer.drain()

    async def responses() -> None:
        while True:
            body = await _frames(u_reader)
            api = pending.pop(struct.unpack_from(">i", body)[0], None)
            if api is not None:
                body = rewrite(api, body, *me)
            c_writer.write(len(body).to_bytes(4, "big") + body)
            await c_writer.drain()

    tasks = [asyncio.create_task(requests()), asyncio.create_task(responses())]
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, struct.error):
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        t.cancel()
        with contextlib.suppress(BaseException):
            await t
    for w in (c_writer, u_writer):
        w.close()


async def serve(listen: tuple[str, int], upstream: tuple[str, int]) -> None:
    me = (listen[0].encode(), listen[1])
    server = await asyncio.start_server(lambda r, w: _relay((r, w), upstream, me), *listen)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bandit.streaming.broker_compat",
                                description=__doc__)
    p.add_argument("--listen", required=True, type=_address, help="HOST:PORT to listen on")
    p.add_argument("--upstream", required=True, type=_address, help="the broker's HOST:PORT")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
