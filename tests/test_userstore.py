"""User signals and caps: salted hashes only, expiry, frequency caps and budgets, in
memory and in SQLite shared by two real uvicorn workers."""

from __future__ import annotations

import httpx
import pytest

from bandit.stores.userstore import (
    SIGNAL_NAMESPACE,
    Cap,
    MemoryUserStore,
    RedisUserStore,
    SqliteUserStore,
    hash_user,
    load_salt,
    parse_budgets,
)
from tests.server.conftest import offers


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path):
    cap = Cap(2, 100.0)
    budgets = {"o9": Cap(3, 50.0)}
    if request.param == "memory":
        return MemoryUserStore(60.0, cap, budgets, max_users=100)
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        s = RedisUserStore(url, 60.0, cap, budgets)
        s.r.flushdb()
        return s
    return SqliteUserStore(str(tmp_path / "users.db"), 60.0, cap, budgets)


def test_explored_decisions_are_counted_per_user_within_a_window(store):
    for t in (1000.0, 1005.0, 1030.0):
        store.record_explored("h1", t)
    store.record_explored("h2", 1031.0)
    assert store.explored("h1", 999.0) == 3
    assert store.explored("h1", 1001.0) == 2  # the window starts after the first
    assert store.explored("h2", 0.0) == 1 and store.explored("nobody", 0.0) == 0


def test_signals_expire_and_caps_hold(store):
    u = "h1"
    store.record_decision(u, "e1", [("o1", "travel"), ("o2", "food")], 1000.0)
    store.record_decision(u, "e2", [("o1", "travel")], 1010.0)
    store.record_reward("e2", 1, 1.0, 1011.0)
    store.record_reward("e1", 2, 0.0, 1011.0)  # no click: not a signal
    sig = store.signals(u, 1020.0)[SIGNAL_NAMESPACE]
    assert sig["imp=o1"] == 2 and sig["imp=o2"] == 1 and sig["impcat=travel"] == 2
    assert sig["clk=o1"] == 1 and sig["clkcat=travel"] == 1 and "clk=o2" not in sig
    assert sig["since_click=1m"] == 1 and sig["depth"] == 2
    # frequency cap: at most 2 impressions of one offer per 100 s
    assert store.capped(u, ["o1", "o2"], 1050.0) == {"o1"}
    assert store.capped("someone-else", ["o1"], 1050.0) == set()
    assert store.capped(u, ["o1", "o2"], 1111.0) == set()
    # every signal expires after the TTL (60 s)
    assert store.signals(u, 1200.0) == {}
    # budget: o9 at most 3 impressions per 50 s over all users
    for i in range(3):
        store.record_decision(f"x{i}", f"b{i}", [("o9", None)], 2000.0 + i)
    assert "o9" in store.capped(None, ["o9"], 2005.0)
    assert "o9" not in store.capped(None, ["o9"], 2060.0)


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
def test_a_zero_cap_holds_for_a_user_never_seen(backend, tmp_path, request):
    """A cap of 0 impressions means never shown: the same for a first-time user on every
    backend (the memory store used to skip the cap for users it had not seen)."""
    cap, budgets = Cap(0, 100.0), {}
    if backend == "memory":
        store = MemoryUserStore(60.0, cap, budgets, max_users=100)
    elif backend == "redis":
        store = RedisUserStore(request.getfixturevalue("redis_url"), 60.0, cap, budgets)
        store.r.flushdb()
    else:
        store = SqliteUserStore(str(tmp_path / "users.db"), 60.0, cap, budgets)
    assert store.capped("first-visit", ["o1", "o2"], 1000.0) == {"o1", "o2"}
    assert store.capped(None, ["o1"], 1000.0) == set()  # no user: no frequency cap


def test_hashes_and_salts(tmp_path):
    salt = load_salt("", str(tmp_path))
    assert salt == load_salt("", str(tmp_path)) and len(salt) == 32  # stable once created
    assert hash_user("alice", salt) != hash_user("alice", b"other")
    assert "alice" not in hash_user("alice", salt)
    assert load_salt("configured", str(tmp_path)) == b"configured"
    with pytest.raises(ValueError):
        Cap.parse("3")
    with pytest.raises(ValueError):
        parse_budgets("o1=3")
    assert parse_budgets("a=1/10, b=2/20") == {"a": Cap(1, 10.0), "b": Cap(2, 20.0)}


def test_memory_store_is_bounded():
    s = MemoryUserStore(60.0, max_users=10)
    for i in range(50):
        s.record_decision(f"u{i}", f"e{i}", [("o1", None)], 100.0)
    assert len(s.users) == 10 and "u49" in s.users and "u0" not in s.users


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_frequency_cap_holds_across_two_workers(start_server, tmp_path, backend, request):
    """Two uvicorn workers share the store: a user never sees one offer more than
    twice, whichever worker answers; signals reach the logged context; the raw user id
    is never written anywhere."""
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        import redis

        redis.Redis.from_url(url).flushdb()
    else:
        url = f"sqlite:{tmp_path / 'users.db'}"
    srv = start_server({"BANDIT_MODEL_DIR": str(tmp_path / "m"), "BANDIT_EVENT_SINK": "file",
                        "BANDIT_EVENT_DIR": str(tmp_path / "ev"),
                        "BANDIT_USER_STORE": url,
                        "BANDIT_FREQUENCY_CAP": "2/3600"}, workers=2)
    srv.wait_ready()
    shown: dict[str, int] = {}
    with httpx.Client(base_url=srv.base, timeout=10) as c:
        statuses = []
        for _ in range(12):
            r = c.post("/v1/decide", json={"offers": offers(5), "user_id": "alice@example.com"})
            statuses.append(r.status_code)
            if r.status_code == 200:
                oid = r.json()["slots"][0]["id"]
                shown[oid] = shown.get(oid, 0) + 1
            else:
                assert r.json()["error"]["code"] == "NoEligibleOffer"
    assert statuses.count(200) == 10 and statuses[10:] == [422, 422]
    assert all(n <= 2 for n in shown.values()) and len(shown) == 5
    srv.stop()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "ev").glob("*.jsonl"))
    assert b"alice" not in raw and b"csig" in raw  # signals were part of the context
    if backend == "sqlite":
        assert b"alice" not in (tmp_path / "users.db").read_bytes()
    else:
        import redis

        r = redis.Redis.from_url(url)
        assert r.keys("*") and not any(b"alice" in k for k in r.keys("*"))


def test_signals_name_offers_by_their_escaped_ids(store):
    """An offer id may hold any UTF-8 text, a newline included: its signal is a safe
    VW feature name, and a context holding it is one shared example (a newline in it
    would split the shared line and give VW an extra example)."""
    from bandit.core.features import escape
    from bandit.core.policy_spec import PolicySpec
    from bandit.core.vw_adapter import VWModel

    odd = "n\n|x: y"
    store.record_decision("h2", "e9", [(odd, None), ("plain", None)], 1000.0)
    sig = store.signals("h2", 1001.0)
    feats = sig[SIGNAL_NAMESPACE]
    assert feats[f"imp={escape(odd)}"] == 1 and feats["imp=plain"] == 1
    assert not any(c in k for k in feats for c in "\n |:")
    model = VWModel(PolicySpec.parse("epsilon:0.1").vw_args())
    try:
        assert len(model.predict(sig, ["|o id=a", "|o id=b", "|o id=c"])) == 3
    finally:
        model.close()
