"""A stock librdkafka CLI (Debian's kcat, librdkafka 2.0.2) reads and writes the embedded
broker's topics through its tools port; straight at Tansu it cannot (see
bandit/streaming/broker_compat.py for why)."""

from __future__ import annotations

import shutil
import struct
import subprocess

import httpx
import orjson
import pytest

from bandit.demo.stack import free_port
from bandit.streaming.broker import EmbeddedBroker
from bandit.streaming.broker_compat import rewrite_api_versions, rewrite_metadata
from tests.server.conftest import offers
from tests.streaming.kafka_util import read_topic

pytestmark = pytest.mark.integration


def kcat(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    exe = shutil.which("kcat") or shutil.which("kafkacat")
    if exe is None:
        pytest.skip("kcat is not installed (Debian package kcat); this test installs nothing "
                    "at run time")
    return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def tools_broker():
    b = EmbeddedBroker(free_port(), tools_port=free_port())
    b.start()
    yield b
    b.stop()


def test_kcat_reads_what_the_server_logged_and_writes_what_the_service_reads(
        tools_broker, start_server, tmp_path, prefix):
    srv = start_server({"BANDIT_KAFKA_BOOTSTRAP": tools_broker.bootstrap,
                        "BANDIT_TOPIC_PREFIX": prefix, "BANDIT_EVENT_SINK": "kafka",
                        "BANDIT_SPOOL_DIR": str(tmp_path / "spool"),
                        "BANDIT_MODEL_DIR": str(tmp_path / "m")})
    srv.wait_ready()
    ids = [f"kc{i}" for i in range(20)]
    with httpx.Client(base_url=srv.base, timeout=10) as c:
        for e in ids:
            assert c.post("/v1/decide", json={"offers": offers(3), "event_id": e}
                          ).status_code == 200
    assert len(read_topic(tools_broker.bootstrap, prefix + "decisions", expect=20)) == 20
    tools = tools_broker.tools_bootstrap
    assert tools is not None
    listing = kcat("-b", tools, "-L", "-t", prefix + "decisions")
    assert listing.returncode == 0, listing.stderr
    assert f'topic "{prefix}decisions" with 4 partitions' in listing.stdout
    assert f"at {tools}" in listing.stdout  # the tool is kept on the tools port
    out = kcat("-b", tools, "-C", "-t", prefix + "decisions", "-o", "beginning", "-e",
               "-f", "%k\t%s\n")
    assert out.returncode == 0, out.stderr
    got = dict(line.split("\t", 1) for line in out.stdout.splitlines())
    assert sorted(got) == sorted(ids)  # keyed by event id, every one
    assert all(orjson.loads(v)["EventId"] == k for k, v in got.items())
    # and the other way: kcat produces, this project's client reads it
    put = kcat("-b", tools, "-P", "-t", prefix + "rewards", "-K", ":",
               stdin="kc0:" + orjson.dumps({"EventId": "kc0", "v": 1.0}).decode() + "\n")
    assert put.returncode == 0, put.stderr
    (reward,) = read_topic(tools_broker.bootstrap, prefix + "rewards", expect=1)
    assert reward == {"EventId": "kc0", "v": 1.0}
    # a consumer group through the relay (coordinator address rewritten too)
    grp = kcat("-b", tools, "-G", f"{prefix}g", "-o", "beginning", "-e", "-f", "%k\n",
               prefix + "decisions")
    assert grp.returncode == 0, grp.stderr
    assert sorted(grp.stdout.split()) == sorted(ids)


def test_kcat_straight_at_tansu_fails_on_api_versions(tools_broker):
    """Why the tools port exists: the same kcat at the broker's own port."""
    res = kcat("-b", tools_broker.bootstrap, "-L", "-m", "5", timeout=30)
    assert res.returncode != 0 and "Read underflow" in res.stderr


def entry(key: int, low: int, high: int) -> bytes:
    return struct.pack(">hhh", key, low, high) + b"\x00"  # and an empty tag buffer


def test_api_versions_rewrite_drops_the_tagged_fields_and_caps_what_it_cannot_rewrite():
    """Tansu's ApiVersions v3 answer ends with four tagged fields (these bytes are the
    ones it sends); the rewrite ends with none, keeps every version it can rewrite,
    caps FindCoordinator at v3 and leaves DescribeCluster out."""
    tags = bytes.fromhex("040001010108ffffffffffffffff020101030100")
    keys = [entry(18, 0, 4), entry(3, 0, 12), entry(10, 0, 5), entry(60, 0, 0)]
    body = (b"\x00\x00\x00\x07" + b"\x00\x00" + bytes([len(keys) + 1]) + b"".join(keys) +
            b"\x00\x00\x00\x00" + tags)
    out = rewrite_api_versions(body, 3)
    assert out == (b"\x00\x00\x00\x07" + b"\x00\x00" + bytes([3 + 1]) + entry(18, 0, 4) +
                   entry(3, 0, 12) + entry(10, 0, 3) + b"\x00\x00\x00\x00" + b"\x00")


def test_metadata_rewrite_points_every_broker_at_the_relay():
    """Metadata v12: header tags, throttle, one broker (111 at 127.0.0.1:9092, no
    rack, no tags), then the rest (cluster id, topics, ...) byte for byte."""
    rest = b"\x00REST-OF-THE-ANSWER"
    meta = (b"\x00\x00\x00\x02" + b"\x00" + b"\x00\x00\x00\x00" + bytes([1 + 1]) +
            struct.pack(">i", 111) + bytes([9 + 1]) + b"127.0.0.1" + struct.pack(">i", 9092) +
            b"\x00" + b"\x00" + rest)
    new = rewrite_metadata(meta, 12, b"localhost", 9093)
    assert new == (meta[:10] + struct.pack(">i", 111) + bytes([9 + 1]) + b"localhost" +
                   struct.pack(">i", 9093) + b"\x00" + b"\x00" + rest)
