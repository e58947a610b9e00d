"""API keys and scopes, rate limits with Retry-After, body timeouts, slow clients."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry

from bandit.config.apikeys import hash_key, parse_keys
from bandit.config.settings import Settings
from bandit.core.policy import VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.server.app import create_app
from bandit.streaming.sinks import NullSink
from tests.server.conftest import Client, offers

DECIDER, REWARDER, ADMIN = "k-decide-123", "k-reward-456", "k-admin-789"
KEYS = (f"{hash_key(DECIDER)}:decide,{hash_key(REWARDER)}:reward+decide,"
        f"{hash_key(ADMIN)}:admin")


def make_client(tmp_path, **kw):
    s = Settings(model_dir=str(tmp_path / "m"), event_sink="none", api_keys=KEYS, **kw)
    app = create_app(s, VWPolicy.fresh(PolicySpec.parse("epsilon:0.1")), NullSink(),
                     registry=CollectorRegistry())
    return Client(app)


def test_keys_and_scopes(tmp_path):
    c = make_client(tmp_path)
    body = {"offers": offers(3)}
    try:
        assert c.get("/healthz").status_code == 200  # public
        r = c.post("/v1/decide", json=body)
        assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
        assert "bearer" in r.headers["www-authenticate"].lower()
        assert c.post("/v1/decide", json=body,
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/decide", json=body,
                      headers={"Authorization": f"Bearer {DECIDER}"}).status_code == 200
        assert c.post("/v1/decide", json=body, headers={"X-API-Key": DECIDER}).status_code == 200
        # Personalizer clients send Ocp-Apim-Subscription-Key
        r = c.post("/personalizer/v1.0/rank", json={"actions": [{"id": "a"}, {"id": "b"}]},
                   headers={"Ocp-Apim-Subscription-Key": DECIDER})
        assert r.status_code == 201
        # a valid key without the route's scope: 403
        r = c.post("/v1/rewards", json={"event_id": "e", "reward": 1},
                   headers={"X-API-Key": DECIDER})
        assert r.status_code == 403 and r.json()["error"]["code"] == "Forbidden"
        assert c.post("/v1/rewards", json={"event_id": "e", "reward": 1},
                      headers={"X-API-Key": REWARDER}).status_code == 202
        assert c.post("/v1/decide", json=body,
                      headers={"X-API-Key": ADMIN}).status_code == 403
        # reading needs some valid key
        assert c.get("/metrics").status_code == 401
        m = c.get("/metrics", headers={"X-API-Key": ADMIN})
        assert m.status_code == 200 and 'bandit_errors_total{code="Unauthorized"}' in m.text
        assert DECIDER not in m.text and hash_key(DECIDER) not in m.text
    finally:
        c.close()


def test_rate_limits_answer_429_with_retry_after(tmp_path):
    c = make_client(tmp_path, rate_limit=5.0, reward_rate_limit=2.0)
    h = {"X-API-Key": REWARDER}
    try:
        codes = [c.post("/v1/decide", json={"offers": offers(2)}, headers=h).status_code
                 for _ in range(8)]
        assert codes[:5] == [200] * 5 and 429 in codes[5:]
        r = c.post("/v1/decide", json={"offers": offers(2)}, headers=h)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # another key has its own bucket
        assert c.post("/v1/decide", json={"offers": offers(2)},
                      headers={"X-API-Key": DECIDER}).status_code == 200
        time.sleep(1.1)
        # rewards have a tighter bucket of their own: a flood cannot reach the model
        codes = [c.post("/v1/rewards", json={"event_id": f"e{i}", "reward": 1},
                        headers=h).status_code for i in range(4)]
        assert codes.count(202) == 2 and codes.count(429) == 2
    finally:
        c.close()


@pytest.mark.integration
def test_keys_never_appear_in_the_logs_or_metrics(start_server, tmp_path):
    """A real server (uvicorn at debug level), every way of sending a key, right and
    wrong, every refusal: neither the keys, nor their hashes, nor the per-key bucket
    names (a hash prefix) appear in its log or in /metrics."""
    wrong = "k-wrong-000"
    srv = start_server({"BANDIT_MODEL_DIR": str(tmp_path / "m"), "BANDIT_EVENT_SINK": "none",
                        "BANDIT_API_KEYS": KEYS, "BANDIT_RATE_LIMIT": "50"},
                       args=("--log-level", "debug"))
    srv.wait_ready()
    body = {"offers": offers(3)}
    with httpx.Client(base_url=srv.base, timeout=10) as c:
        codes = []
        for key in (DECIDER, REWARDER, ADMIN, wrong):
            for h in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key},
                      {"Ocp-Apim-Subscription-Key": key}):
                codes.append(c.post("/v1/decide", json=body, headers=h).status_code)
                codes.append(c.post("/v1/rewards", json={"event_id": "e", "reward": 1},
                                    headers=h).status_code)
                codes.append(c.post("/v1/admin/pin", json={"version": "999999"},
                                    headers=h).status_code)
        for _ in range(80):  # past the rate limit: 429s
            codes.append(c.post("/v1/decide", json=body,
                                headers={"X-API-Key": DECIDER}).status_code)
        metrics = c.get("/metrics", headers={"X-API-Key": ADMIN}).text
    assert {200, 202, 401, 403, 404, 429} <= set(codes)
    srv.stop()
    log = srv.log_path.read_text()
    assert "Uvicorn running" in log and "Application startup complete" in log  # read
    secrets = []
    for key in (DECIDER, REWARDER, ADMIN, wrong):
        secrets += [key, hash_key(key), hash_key(key)[:16]]
    for text in (log, metrics):
        found = [x for x in secrets if x in text]
        assert not found, found


def test_bad_key_configuration_is_refused():
    for bad in ("abc:decide", f"{hash_key('x')}", f"{hash_key('x')}:root",
                f"{'zz' * 32}:decide"):
        with pytest.raises(ValueError):
            parse_keys(bad)
    from bandit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="BANDIT_API_KEYS") as info:
        Settings.from_env({"BANDIT_API_KEYS": "nothex:decide"})
    assert "nothex" not in str(info.value)


@pytest.mark.integration
def test_slow_clients_get_408_and_cannot_starve_a_worker(start_server, tmp_path):
    srv = start_server({"BANDIT_MODEL_DIR": str(tmp_path / "m"), "BANDIT_EVENT_SINK": "none",
                        "BANDIT_REQUEST_TIMEOUT": "1"})
    srv.wait_ready()
    host, port = "127.0.0.1", srv.port

    async def slow_loris(n: int) -> list[asyncio.StreamWriter]:
        conns = []
        for _ in range(n):
            _, w = await asyncio.open_connection(host, port)
            w.write(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{\"offers\": [")  # ... and never the rest
            await w.drain()
            conns.append(w)
        return conns

    async def main() -> tuple[float, float, bytes]:
        conns = await slow_loris(100)
        t0 = time.monotonic()
        async with httpx.AsyncClient(base_url=srv.base) as c:  # a normal client meanwhile
            r = await c.post("/v1/decide", json={"offers": offers(3)})
            assert r.status_code == 200
        took = time.monotonic() - t0
        r0, w0 = await asyncio.open_connection(host, port)
        w0.write(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        await w0.drain()
        t1 = time.monotonic()
        reply = await asyncio.wait_for(r0.read(), 10)  # the server closes after the 408
        waited = time.monotonic() - t1
        for w in [*conns, w0]:
            w.close()
        return took, waited, reply

    took, waited, reply = asyncio.run(main())
    # "answered at once": well inside the 1 s body timeout, so no slow body had to time
    # out first (a worker held by them would answer after about 1 s)
    assert took < 0.5, took
    assert reply.startswith(b"HTTP/1.1 408") and b"RequestTimeout" in reply
    # the slow body is cut at the timeout (1 s, plus at most the 0.25 s sweep tick)
    # and the drain after it (half the timeout: 0.5 s), never later
    assert 1.45 <= waited < 1.5 + 0.25 + 0.3, waited
    with socket.create_connection((host, port)):
        pass  # still accepting


def test_admin_routes_pin_and_need_the_admin_scope(tmp_path):
    import asyncio

    from bandit.core.vw_adapter import VWModel
    from bandit.stores.modelstore import ModelStore

    store = ModelStore(tmp_path / "m")
    spec = PolicySpec.parse("epsilon:0.1")
    model = VWModel(spec.vw_args())
    first = store.publish(model, str(spec), 1).version
    store.publish(model, str(spec), 2)
    model.close()
    s = Settings(model_dir=str(tmp_path / "m"), event_sink="none", api_keys=KEYS)
    app = create_app(s, VWPolicy.fresh(spec), NullSink(), registry=CollectorRegistry(),
                     store=store)
    c = Client(app)
    svc = app.state.service
    try:
        asyncio.run(svc.refresh_model())
        assert c.post("/v1/admin/pin", json={"version": first},
                      headers={"X-API-Key": DECIDER}).status_code == 403
        r = c.post("/v1/admin/pin", json={"version": first}, headers={"X-API-Key": ADMIN})
        assert r.status_code == 200 and svc.policy.version == first
        r = c.post("/v1/admin/pin", json={"version": "999999"},
                   headers={"X-API-Key": ADMIN})
        assert r.status_code == 404 and r.json()["error"]["field"] == "version"
        assert c.post("/v1/admin/unpin", headers={"X-API-Key": ADMIN}).status_code == 200
        assert svc.policy.version == store.current().version != first
    finally:
        c.close()


def test_oversized_bodies_get_a_413_that_urllib_requests_and_httpx_read(start_server,
                                                                        tmp_path):
    """A body over BANDIT_MAX_BODY_BYTES is drained (up to DRAIN_BYTES) before the 413,
    so clients that send it whole before reading (urllib sends ``Connection: close``)
    read the 413 instead of a broken pipe or a reset; on the fast routes and on a
    Starlette route, with Content-Length and chunked."""
    import urllib.error
    import urllib.request

    import requests

    from bandit.server.http import DRAIN_BYTES

    srv = start_server({"BANDIT_MODEL_DIR": str(tmp_path / "m"), "BANDIT_EVENT_SINK": "none",
                        "BANDIT_MAX_BODY_BYTES": "65536"})
    srv.wait_ready()
    body = b'{"offers": [' + b" " * (DRAIN_BYTES // 4) + b"]}"  # 32 times the limit
    for path in ("/v1/decide", "/v1/rewards", "/personalizer/v1.0/rank"):
        for _ in range(3):
            req = urllib.request.Request(srv.base + path, data=body,
                                         headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(req, timeout=20)
            assert refused.value.code == 413, path
            assert b"PayloadTooLarge" in refused.value.read()
            r = httpx.post(srv.base + path, content=body, timeout=20,
                           headers={"Content-Type": "application/json"})
            assert r.status_code == 413 and r.json()["error"]["code"] == "PayloadTooLarge"
            assert r.headers["connection"] == "close"
            r2 = requests.post(srv.base + path, data=body, timeout=20,
                               headers={"Content-Type": "application/json"})
            assert r2.status_code == 413 and r2.json()["error"]["code"] == "PayloadTooLarge"

            def chunks():
                for _ in range(32):
                    yield body[: len(body) // 32]

            r = httpx.post(srv.base + path, content=chunks(), timeout=20,
                           headers={"Content-Type": "application/json"})
            assert r.status_code == 413, path
    assert httpx.post(srv.base + "/v1/decide", json={"offers": offers(3)}).status_code == 200


def test_a_slow_oversized_body_is_answered_and_cut_at_the_drain_cap(start_server, tmp_path):
    """The drain is bounded in time: a body declared too large that never arrives gets
    its 413 after DRAIN_SECONDS (not at the 10 s body timeout) and the connection is
    closed."""
    from bandit.server.http import DRAIN_SECONDS

    srv = start_server({"BANDIT_MODEL_DIR": str(tmp_path / "m"), "BANDIT_EVENT_SINK": "none",
                        "BANDIT_MAX_BODY_BYTES": "65536", "BANDIT_REQUEST_TIMEOUT": "10"})
    srv.wait_ready()
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                  b"\r\nContent-Length: 100000\r\n\r\n{\"offers\": [")  # ... and no more
        t0 = time.monotonic()
        s.settimeout(10)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        waited = time.monotonic() - t0
    assert reply.startswith(b"HTTP/1.1 413") and b"PayloadTooLarge" in reply
    assert DRAIN_SECONDS - 0.05 <= waited < DRAIN_SECONDS + 0.5, waited
