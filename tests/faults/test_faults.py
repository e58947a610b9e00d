"""Fault tests with real processes, bounded in time: a worker killed under load, the
broker restarted mid-stream, a full spool disk, the learner killed while it writes."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import orjson
import pytest

from bandit.demo.simulator import World
from bandit.demo.stack import Child, child_pids, free_port, worker_pids
from bandit.stores.modelstore import ModelStore
from tests.server.conftest import offers
from tests.streaming.kafka_util import produce, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def wait_workers(supervisor: int, n: int, *, without: set[int] = frozenset(),
                 timeout: float = 30.0) -> list[int]:
    """Wait until the supervisor has exactly ``n`` workers, none of them in ``without``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker_pids(supervisor)
        if len(pids) == n and not set(pids) & without:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"workers {worker_pids(supervisor)}, wanted {n} new of {without}")


def test_a_killed_worker_is_replaced_and_only_in_flight_requests_fail(start_server, tmp_path):
    srv = start_server({"BANDIT_MODEL_DIR": str(tmp_path / "m"), "BANDIT_EVENT_SINK": "none"},
                       workers=2)
    srv.wait_ready()
    workers = wait_workers(srv.proc.pid, 2)
    assert len(child_pids(srv.proc.pid)) == 3  # two workers and the resource tracker
    results: list[int] = []
    stop = threading.Event()

    def load() -> None:
        rng = np.random.default_rng(0)
        world = World(seed=1)
        with httpx.Client(base_url=srv.base, timeout=10) as c:
            end = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < end:
                body, _ = world.request(rng, 5)
                try:
                    results.append(c.post("/v1/decide", json=body).status_code)
                except httpx.HTTPError:
                    results.append(-1)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    before = len(results)
    victim = max(workers)
    os.kill(victim, signal.SIGKILL)
    # the supervisor starts a NEW worker process: two workers again, the victim gone,
    # one pid never seen before; the survivor is the same process
    after = wait_workers(srv.proc.pid, 2, without={victim})
    (replacement,) = set(after) - set(workers)
    assert set(after) - {replacement} == set(workers) - {victim}
    time.sleep(1.0)  # the replacement starts serving
    mark = len(results)
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(30)
    failed = [r for r in results if r != 200]
    assert before > 50 and len(failed) <= 4, failed  # at most what was in flight
    assert all(r == 200 for r in results[mark:]) and len(results) - mark > 50
    assert sorted(worker_pids(srv.proc.pid)) == sorted(after)  # the replacement stayed up


def test_broker_restart_mid_stream_loses_nothing_sent_after_it_went_down(
        own_broker, start_server, tmp_path):
    own_broker.start()
    env = {"BANDIT_KAFKA_BOOTSTRAP": own_broker.bootstrap, "BANDIT_TOPIC_PREFIX": "flt.",
           "BANDIT_SPOOL_DIR": str(tmp_path / "spool"), "BANDIT_EVENT_SINK": "kafka",
           "BANDIT_MODEL_DIR": str(tmp_path / "m")}
    srv = start_server(env)
    srv.wait_ready()
    with httpx.Client(base_url=srv.base, timeout=10) as c:
        for i in range(200):
            assert c.post("/v1/decide", json={"offers": offers(3), "event_id": f"a{i}"}
                          ).status_code == 200
        own_broker.kill()  # the broker dies mid-stream (its in-memory topics with it)
        for i in range(500):
            assert c.post("/v1/decide", json={"offers": offers(3), "event_id": f"b{i}"}
                          ).status_code == 200
        ready = c.get("/readyz").json()
        assert ready["sink"]["spool_depth"] > 0
        own_broker.start()
        for i in range(300):
            assert c.post("/v1/decide", json={"offers": offers(3), "event_id": f"c{i}"}
                          ).status_code == 200
        deadline = time.monotonic() + 60
        while c.get("/readyz").json()["sink"]["spool_depth"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.get("/readyz").json()["sink"]["spool_depth"] == 0
    got = {d["EventId"] for d in read_topic(own_broker.bootstrap, "flt.decisions")}
    expected = {f"b{i}" for i in range(500)} | {f"c{i}" for i in range(300)}
    assert expected <= got  # everything sent while it was down or after is there


def test_a_full_spool_disk_is_a_clear_503_not_a_crash(tmp_path):
    """The server may write at most 64 KiB per file (RLIMIT_FSIZE); the spool fills up
    while eight clients send at once (requests handled in batches). Every decision
    answered 200 is in the spool, whole, and none answered 503 is."""
    port = free_port()
    env = {**os.environ, "BANDIT_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # no broker
           "BANDIT_EVENT_SINK": "kafka", "BANDIT_SPOOL_DIR": str(tmp_path / "spool"),
           "BANDIT_MODEL_DIR": str(tmp_path / "m")}

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.Popen([sys.executable, "-m", "bandit.cli.serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=limit)  # noqa: PLW1509
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)

        def send(client: int) -> list[tuple[str, int]]:
            out = []
            with httpx.Client(base_url=base, timeout=10) as c:
                for i in range(50):
                    eid = f"full-{client}-{i}"
                    out.append((eid, c.post("/v1/decide", json={
                        "offers": offers(5), "event_id": eid}).status_code))
            return out

        with ThreadPoolExecutor(8) as pool:
            codes = dict(kv for part in pool.map(send, range(8)) for kv in part)
        with httpx.Client(base_url=base, timeout=10) as c:
            r = c.post("/v1/decide", json={"offers": offers(5)})
            ready = c.get("/readyz")
            health = c.get("/healthz")
            metrics = c.get("/metrics").text
        assert 200 in codes.values() and 503 in codes.values()
        assert set(codes.values()) <= {200, 503}
        assert r.status_code == 503 and r.json()["error"]["code"] == "ServiceUnavailable"
        assert ready.status_code == 503 and "spool write failed" in ready.json()["sink"][
            "last_error"]
        assert health.status_code == 200 and proc.poll() is None  # alive, not crashed
        batches, handled = (metric(metrics, name) for name in (
            "bandit_handler_batches_total", "bandit_batched_handlers_total"))
        assert handled > batches  # some batch held more than one request
        spooled = []
        for seg in sorted((tmp_path / "spool").glob("*/seg-*.log")):
            for line in seg.read_bytes().splitlines():
                head, tab, value = line.partition(b"\t")
                assert tab and orjson.loads(value)["EventId"] == orjson.loads(head)["k"]
                spooled.append(orjson.loads(head)["k"])
        assert sorted(spooled) == sorted(e for e, code in codes.items() if code == 200)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def metric(text: str, name: str) -> float:
    """The value of the sample ``name`` in a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def kill_mid_write(child: Child, models, limit: float) -> bool:
    """SIGKILL ``child`` while a file of the model store is half written (a temporary
    ``.name.*`` file exists: a model being saved, a manifest or pending-join snapshot
    being written); True if one was seen before ``limit`` seconds (else killed then)."""
    deadline = time.monotonic() + limit
    seen = False
    while time.monotonic() < deadline and child.running:
        try:
            seen = any(p.name.startswith(".") for p in models.iterdir())
        except FileNotFoundError:
            seen = False
        if seen:
            break
        time.sleep(0.0005)
    child.kill()
    return seen


def test_learner_killed_at_random_times_and_mid_write_learns_each_event_once(
        broker, prefix, tmp_path):
    """``kill -9`` of the learner at uniformly random times (seeded), and while it is
    writing the store: after each kill the manifest names a complete, verified model;
    in the end every event was learned exactly once (count and digest of the ids)."""
    from bandit.core.events import dumps
    from bandit.learner.join import digest_of
    from tests.streaming.test_learner import decision

    n = 12_000
    ids = [f"w{i}" for i in range(n)]

    def traffic() -> None:  # ~20 s of traffic, so the kills land mid-stream
        for start in range(0, n, 200):
            chunk = list(enumerate(ids))[start:start + 200]
            produce(broker.bootstrap, prefix + "decisions",
                    [(e, dumps(decision(e, i % 3))) for i, e in chunk])
            produce(broker.bootstrap, prefix + "rewards",
                    [(e, dumps({"EventId": e, "v": 1.0})) for i, e in chunk if i % 2 == 0])
            time.sleep(0.3)

    producer = threading.Thread(target=traffic)
    models = tmp_path / "models"
    env = {"BANDIT_KAFKA_BOOTSTRAP": broker.bootstrap, "BANDIT_TOPIC_PREFIX": prefix,
           # a reward sent with its decision joins it however the kills fall: a window
           # closes once its time is up by the learner's clock and the rewards have been
           # read past it (so also when a kill and restart outlast it)
           "BANDIT_MODEL_DIR": str(models), "BANDIT_REWARD_WAIT": "8",
           "BANDIT_CHECKPOINT_EVENTS": "100", "BANDIT_CHECKPOINT_SECONDS": "0.05"}
    store = ModelStore(models)
    rng = np.random.default_rng(5)
    # each round: a uniformly random kill time over the learner's first 3.5 s (start-up
    # included), or, every third round, the moment a store file is half written
    plan = [("write" if r % 3 == 2 else float(rng.uniform(0.0, 3.5))) for r in range(9)]
    mid_writes, loads, learned_after = 0, 0, []
    producer.start()
    for when in plan:
        child = Child("learner", "bandit.cli.learn", [], env, tmp_path / "learner.log")
        if when == "write":
            mid_writes += kill_mid_write(child, models, 15.0)
        else:
            time.sleep(when)
            child.kill()
        man = store.current()
        if man is not None:
            model = store.load(man)  # verifies the checksum; VW must accept it
            model.close()
            loads += 1
        learned_after.append(man.events_learned if man else 0)
    assert mid_writes == 3  # every write-round caught a file half written
    # most kills landed mid-stream, with events learned and more still to come
    assert loads >= 6 and sum(0 < x < n for x in learned_after) >= 5, learned_after
    producer.join(120)
    child = Child("learner", "bandit.cli.learn", [], env, tmp_path / "learner.log")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            man = store.current()
            if man is not None and man.events_learned >= n:
                break
            time.sleep(0.2)
        time.sleep(1.5)  # nothing more arrives, nothing is learned twice
    finally:
        assert child.stop() == 0
    man = store.current()
    assert man is not None
    counters = man.extra["counters"]
    assert man.events_learned == counters["learned"] == n
    assert counters["digest"] == digest_of(ids)  # each id exactly once
    assert counters["duplicates"] == 0 and counters["lost"] == 0
    assert counters["defaulted"] == n // 2  # the unrewarded half, at the default reward
    store.load(man).close()
    leftovers = [p.name for p in models.iterdir() if p.name.startswith(".")]
    assert all(not n.endswith(".vw") or n.startswith(".model-") for n in leftovers)
