"""The offer catalogue in Redis (a real redis-server): the same answers and revisions
as the SQLite catalogue for the same writes; views on two servers share it (an id put
through one is decided on by the other at once, a change reaches it within the
refresh time); a Redis that does not answer is a 503 on the catalogue's routes, not a
500, decisions go on, and it is not retried on every decision."""

from __future__ import annotations

import random
import time

import httpx
import pytest

from bandit.core.errors import NotFound
from bandit.core.features import Limits
from bandit.demo.stack import free_port
from bandit.stores.redis_url import redacted
from bandit.value.catalogue import Catalogue, CatalogueEntry, parse_entry
from bandit.value.catalogue_redis import RedisCatalogue
from bandit.value.catalogue_view import REMOTE_REFRESH_SECONDS, REMOTE_RETRY_SECONDS, CatalogueView


def entry(oid: str, x: float, **extra: object) -> CatalogueEntry:
    return parse_entry(oid, {"features": {"x": x}, "price": x, "title": f"offer {oid}",
                             **extra}, now=1000.0 + x)


def answers(store, op: tuple) -> object:
    kind, *args = op
    try:
        if kind == "put":
            return store.put(args[0])
        if kind == "delete":
            return store.delete(args[0])
        if kind == "get":
            return store.get(args[0])
        if kind == "changed":
            return store.changed_since(args[0])
        return store.revision, store.entries(), store.active(args[0])
    except NotFound as exc:
        return ("NotFound", exc.message)


def test_redis_and_sqlite_catalogues_give_the_same_answers(tmp_path, redis_db, monkeypatch):
    import bandit.value.catalogue_redis as catalogue_redis

    monkeypatch.setattr(catalogue_redis, "PAGE", 7)  # what changed read in many pages
    sqlite, remote = Catalogue(tmp_path / "c.sqlite"), RedisCatalogue(redis_db)
    replies: list[int] = []
    page = remote._page

    def counted(**kw):
        found, bodies = page(**kw)
        replies.append(len(found) // 2)
        return found, bodies

    remote._page = counted
    rng = random.Random(3)
    ids = [f"o{i}" for i in range(12)]
    ops: list[tuple] = []
    for step in range(400):
        oid = rng.choice(ids)
        kind = rng.choice(["put", "put", "delete", "get", "changed", "all"])
        if kind == "put":
            ops.append(("put", entry(oid, rng.random(), start=rng.choice([None, 1500.0]))))
        elif kind in ("delete", "get"):
            ops.append((kind, oid))
        elif kind == "changed":
            ops.append(("changed", rng.randrange(step + 1)))
        else:
            ops.append(("all", rng.choice([1200.0, 2000.0])))
    for op in ops:
        assert answers(sqlite, op) == answers(remote, op), op
    assert remote.revision == sqlite.revision > 100
    assert len(remote.entries()) >= 3 and answers(remote, ("changed", 0))[2]  # (deletions)
    assert max(replies) == 7 and replies.count(7) >= 3  # reads of several pages, none more


def test_a_view_reads_a_store_made_anew_whole(redis_db, tmp_path):
    """A Redis flushed or restarted without its data (or a catalogue file replaced)
    starts its revisions again: the view reads it whole rather than keep what is gone."""
    import redis

    for source in (redis_db, tmp_path / "c.sqlite"):
        view = CatalogueView(source, Limits(), refresh_every=0.0)
        for i in range(3):
            view.catalogue.put(entry(f"old{i}", float(i)))
        assert view.refresh(force=True) and sorted(view.entries) == ["old0", "old1", "old2"]
        if isinstance(source, str):
            redis.Redis.from_url(source).flushdb()
        else:
            view.close()
            for f in tmp_path.glob("c.sqlite*"):
                f.unlink()
            view._catalogue = None
        fresh = view.catalogue
        for i in range(4):  # past the view's revision (3): revisions alone would not tell
            fresh.put(entry(f"new{i}", float(i)))
        assert view.refresh(force=True) is True
        assert sorted(view.entries) == ["new0", "new1", "new2", "new3"], source
        view.close()


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers (a hung Redis)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s.getsockname()[1]
    s.close()


def test_a_hung_redis_costs_one_timeout_then_503s_at_once(silent_port, tmp_path):
    from prometheus_client import CollectorRegistry
    from starlette.testclient import TestClient

    from bandit.config.settings import Settings
    from bandit.core.policy import VWPolicy
    from bandit.core.policy_spec import PolicySpec
    from bandit.server.app import create_app
    from bandit.streaming.sinks import NullSink
    from bandit.value.catalogue_redis import TIMEOUT

    s = Settings.from_env({"BANDIT_EVENT_SINK": "none", "BANDIT_MODEL_DIR": str(tmp_path),
                           "BANDIT_CATALOGUE": f"redis://127.0.0.1:{silent_port}/0"})
    policy = VWPolicy.fresh(PolicySpec.parse("epsilon:0.1"))
    t0 = time.monotonic()
    app = create_app(s, policy, NullSink(), registry=CollectorRegistry())
    startup = time.monotonic() - t0  # the view's first read waited one timeout, no more
    assert TIMEOUT * 0.9 <= startup < TIMEOUT + 0.75, startup
    c = TestClient(app)
    view = app.state.service.value_aware.offers
    assert view.read_errors == 1
    calls = [lambda: c.put("/v1/offers/rome", json={"features": {"x": 1.0}}),
             lambda: c.get("/v1/offers"), lambda: c.get("/v1/offers/rome"),
             lambda: c.delete("/v1/offers/rome")]
    took: list[float] = []
    for i, call in enumerate(calls + [lambda: c.post("/v1/decide", json={
            "offers": [{"id": "a", "features": {"x": 1.0}}]})] * 20):
        t0 = time.monotonic()
        r = call()
        took.append(time.monotonic() - t0)
        if i < len(calls):
            assert r.status_code == 503 and "did not answer" in r.text, r.text
        else:
            assert r.status_code == 200, r.text
    # within the retry time nothing asks the hung Redis (each try would wait 0.25 s)
    assert view.read_errors == 1 and max(took) < 0.8 * TIMEOUT, (view.read_errors, took)


def test_two_servers_views_share_the_catalogue(redis_db):
    now = [0.0]
    a = CatalogueView(redis_db, Limits(), clock=lambda: now[0])
    b = CatalogueView(redis_db, Limits(), clock=lambda: now[0])
    assert a.refresh_every == b.refresh_every == REMOTE_REFRESH_SECONDS
    a.catalogue.put(entry("rome", 1.0))
    a.refresh(force=True)
    # b has not read since: a request naming the id makes it read at once
    assert "rome" not in b.entries and b.refresh() is False
    from bandit.config.settings import Settings
    from bandit.core.schema import RequestParser

    parser = RequestParser(Settings.from_env({}))
    request = parser.decide(b'{"offers": ["rome"]}')
    resolved, found = b.resolve(request, 2000.0)
    assert [o.id for o in resolved.offers] == ["rome"] and found["rome"].price == 1.0
    # a change to a known entry reaches b at its next read, within the refresh time
    a.catalogue.put(entry("rome", 3.0))
    now[0] += REMOTE_REFRESH_SECONDS / 2
    assert b.refresh() is False and b.entries["rome"].price == 1.0
    now[0] += REMOTE_REFRESH_SECONDS / 2
    assert b.refresh() is True and b.entries["rome"].price == 3.0
    b.catalogue.delete("rome")
    now[0] += REMOTE_REFRESH_SECONDS
    assert a.refresh() is True and "rome" not in a.entries
    assert b.refresh(force=True) is True and a.revision == b.revision == 3


def test_a_redis_that_does_not_answer_is_not_asked_on_every_decision(caplog):
    now = [0.0]
    view = CatalogueView(f"redis://127.0.0.1:{free_port()}/0", Limits(),
                         clock=lambda: now[0])
    assert view.read_errors == 1 and view.entries == {}
    assert "cannot be used" in caplog.text
    t0 = time.monotonic()
    for _ in range(50):  # within the retry time: not tried (each try waits its timeout)
        now[0] += REMOTE_RETRY_SECONDS / 100
        assert view.refresh(force=True) is False
    assert time.monotonic() - t0 < 0.2 and view.read_errors == 1
    now[0] += REMOTE_RETRY_SECONDS
    assert view.refresh(force=True) is False and view.read_errors == 2


def test_the_url_s_password_is_not_named():
    assert redacted("redis://user:s3cret@cache:6380/2") == "redis://user:***@cache:6380/2"
    assert redacted("redis://:s3cret@cache/0") == "redis://:***@cache/0"
    assert redacted("redis://cache:6379/0") == "redis://cache:6379/0"


def test_routes_answer_503_when_redis_is_away_and_decisions_go_on(tmp_path, caplog):
    from prometheus_client import CollectorRegistry
    from starlette.testclient import TestClient

    from bandit.config.settings import Settings
    from bandit.core.policy import VWPolicy
    from bandit.core.policy_spec import PolicySpec
    from bandit.server.app import create_app
    from bandit.streaming.sinks import NullSink

    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    s = Settings.from_env({"BANDIT_EVENT_SINK": "none", "BANDIT_CATALOGUE": url,
                           "BANDIT_MODEL_DIR": str(tmp_path / "m")})
    app = create_app(s, VWPolicy.fresh(PolicySpec.parse("epsilon:0.1")), NullSink(),
                     registry=CollectorRegistry())
    c = TestClient(app)
    for r in (c.put("/v1/offers/rome", json={"features": {"x": 1.0}}), c.get("/v1/offers"),
              c.get("/v1/offers/rome"), c.delete("/v1/offers/rome")):
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "CatalogueUnavailable"
        assert "hunter2" not in r.text
    r = c.post("/v1/decide", json={"offers": [{"id": "a", "features": {"x": 1.0}},
                                              {"id": "b", "features": {"x": 2.0}}]})
    assert r.status_code == 200, r.text
    assert not list((tmp_path / "m").glob("catalogue*"))  # no SQLite file in its place
    assert "redis://:***@127.0.0.1" in caplog.text and "hunter2" not in caplog.text


@pytest.mark.integration
def test_two_hosts_decide_on_one_catalogue(start_server, tmp_path, redis_db):
    """Two servers with their own model dirs (two hosts) and one Redis catalogue: an
    offer put through one is decided on by the other at once; a deletion through the
    other reaches the first within the refresh time."""
    servers = [start_server({"BANDIT_MODEL_DIR": str(tmp_path / f"m{i}"),
                             "BANDIT_EVENT_SINK": "none", "BANDIT_CATALOGUE": redis_db,
                             "BANDIT_POLICY": "epsilon:0.2"}) for i in range(2)]
    for srv in servers:
        srv.wait_ready()
    a, b = (srv.base for srv in servers)
    for i in range(3):
        r = httpx.put(f"{a}/v1/offers/o{i}", json={"features": {"x": float(i)}}, timeout=10)
        assert r.status_code == 201, r.text
    r = httpx.post(f"{b}/v1/decide", json={"offers": ["o0", "o1", "o2"]}, timeout=10)
    assert r.status_code == 200, r.text
    assert sorted(x["id"] for x in r.json()["ranking"]) == ["o0", "o1", "o2"]
    assert [o["id"] for o in httpx.get(f"{b}/v1/offers", timeout=10).json()["offers"]] == \
        ["o0", "o1", "o2"]
    assert httpx.delete(f"{b}/v1/offers/o2", timeout=10).status_code == 200
    deadline = time.monotonic() + 5 * REMOTE_REFRESH_SECONDS
    while time.monotonic() < deadline:
        r = httpx.post(f"{a}/v1/decide", json={"offers": ["o2"]}, timeout=10)
        if r.status_code == 400:
            break
        time.sleep(0.05)
    assert r.status_code == 400 and "o2" in r.text
    assert not list(tmp_path.glob("m*/catalogue*"))  # neither host kept a file of its own
