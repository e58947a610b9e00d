"""State that must hold per user or per host, not per worker: exploration budgets,
frequency caps, the status page's counts and the arm guard, on a real 2-worker
``bandit-serve``. Requests go out on fresh connections from several threads, so both
workers serve them (checked: each worker's rows are in the shared counts)."""

from __future__ import annotations

import re
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bandit.core.experiments import Experiment
from bandit.stores.userstore import hash_user
from tests.server.conftest import offers

pytestmark = pytest.mark.integration


def post(base: str, path: str, body: dict) -> httpx.Response:
    """One request on its own connection (so the two workers share the traffic)."""
    with httpx.Client(base_url=base, timeout=10) as c:
        return c.post(path, json=body)


def get(base: str, path: str) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=10) as c:
        return c.get(path)


def workers_that_decided(shared: Path) -> int:
    """Distinct workers with decisions in the shared counts (written once a second)."""
    db = sqlite3.connect(shared / "live.sqlite")
    try:
        (n,) = db.execute("SELECT COUNT(DISTINCT worker) FROM counts WHERE decisions>0"
                          ).fetchone()
    finally:
        db.close()
    return int(n)


def per_worker(shared: Path) -> dict[str, dict[str, int]]:
    """Decisions per worker and series in the shared counts."""
    db = sqlite3.connect(shared / "live.sqlite")
    try:
        rows = db.execute("SELECT worker, series, SUM(decisions) FROM counts "
                          "GROUP BY worker, series").fetchall()
    finally:
        db.close()
    out: dict[str, dict[str, int]] = {}
    for w, s, n in rows:
        out.setdefault(w, {})[s] = int(n)
    return out


def two_workers(start_server, tmp_path, **env: str):
    shared = tmp_path / "shared"
    srv = start_server({"BANDIT_MODEL_DIR": str(tmp_path / "m"), "BANDIT_EVENT_SINK": "none",
                        "BANDIT_SHARED_DIR": str(shared), "BANDIT_USER_SALT": "s", **env},
                       workers=2)
    srv.wait_ready()
    return srv, shared


def test_exploration_budget_and_frequency_cap_hold_across_workers(start_server, tmp_path):
    srv, shared = two_workers(start_server, tmp_path, BANDIT_POLICY="epsilon:1.0",
                              BANDIT_EXPLORE_BUDGET="3", BANDIT_FREQUENCY_CAP="4/3600")
    users = [f"user{i}" for i in range(12)]

    def decide(user: str) -> httpx.Response:
        return post(srv.base, "/v1/decide", {"offers": offers(5), "user_id": user})

    # round-robin over the users: six requests in flight are six users' (a user's own
    # requests follow each other, as a user's do; the check and the count are separate
    # steps, so one user's simultaneous requests on two workers could both pass)
    order = [u for _ in range(8) for u in users]
    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(decide, order))
    by_user: dict[str, list[dict]] = {}
    for u, r in zip(order, outs, strict=True):
        assert r.status_code == 200, r.text
        by_user.setdefault(u, []).append(r.json())
    for u, decisions in by_user.items():
        # ε = 1: every decision is random until the budget (3) is spent, then greedy
        explored = [min(s["probability"] for s in d["slots"]) < 1.0 for d in decisions]
        assert sum(explored) == 3, (u, explored)
    # the frequency cap (4 impressions of an offer per user): a user with one offer sees
    # it four times, then nothing is eligible, whichever worker answers
    codes = [post(srv.base, "/v1/decide", {"offers": offers(1), "user_id": "capped-user"}
                  ).status_code for _ in range(10)]
    assert codes == [200] * 4 + [422] * 6, codes
    time.sleep(2.5)  # both workers have published their counts
    assert workers_that_decided(shared) == 2


def test_status_page_counts_every_workers_decisions_and_rewards(start_server, tmp_path):
    srv, shared = two_workers(start_server, tmp_path, BANDIT_POLICY="epsilon:0.1")
    n = 240
    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(lambda i: post(srv.base, "/v1/decide", {"offers": offers(3)}),
                             range(n)))
        events = [r.json()["event_id"] for r in outs]
        # a reward for every fourth decision, on fresh connections: about half of them
        # reach the worker that did not make the decision
        rewarded = list(pool.map(lambda e: post(srv.base, "/v1/rewards", {
            "event_id": e, "reward": 1.0}).status_code, events[::4]))
    assert rewarded == [202] * (n // 4)
    time.sleep(3.0)  # published (1 s) and the held rewards settled (next flush)
    assert workers_that_decided(shared) == 2
    for _ in range(6):  # whichever worker renders the page
        page = get(srv.base, "/").text
        row = re.search(r"<tr><td>epsilon:0.1</td><td>(\d+)</td><td>([\d.]+)</td>", page)
        assert row is not None, page[:2000]
        assert (int(row.group(1)), row.group(2)) == (n, "0.2500")
        assert "All workers' view" in page


def test_arm_guard_sees_every_worker_and_its_switch_reaches_all(start_server, tmp_path):
    """The model arm converts at 2%, the baseline at 30%. The guard needs 220 decisions
    per arm in its window: the two workers together reach that, neither alone."""
    exp = "g:model=0.5,popularity=0.5"
    srv, shared = two_workers(start_server, tmp_path, BANDIT_EXPERIMENT=exp,
                              BANDIT_ARM_GUARD_MARGIN="0.02", BANDIT_ARM_GUARD_MIN="220")
    arms = Experiment.parse(exp)
    salt = b"s"

    def one(i: int) -> None:
        user = f"u{i}"
        r = post(srv.base, "/v1/decide", {"offers": offers(3), "user_id": user})
        assert r.status_code == 200
        arm = arms.assign(hash_user(user, salt))
        if (i * 7919) % 100 < (2 if arm == "model" else 30):
            post(srv.base, "/v1/rewards", {"event_id": r.json()["event_id"], "reward": 1.0})

    # 600 decisions as fast as they go, then one every 0.5 s (at most 40) until every
    # worker reports the trip: the guard looks every 10 s, at a decision
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(600)))
    i, deadline = 600, time.monotonic() + 25
    while time.monotonic() < deadline and i < 640:
        if all(get(srv.base, "/v1/model").json()["arm_guard_tripped"] for _ in range(6)):
            break
        one(i)
        i += 1
        time.sleep(0.5)
    assert all(get(srv.base, "/v1/model").json()["arm_guard_tripped"] for _ in range(8))
    time.sleep(1.5)
    counts = per_worker(shared)  # neither worker alone had enough of either arm
    assert len(counts) == 2 and all(n < 220 for w in counts.values() for n in w.values()), \
        counts
    assert all(sum(w[a] for w in counts.values()) >= 220 for a in ("model", "popularity"))
    assert post(srv.base, "/v1/admin/arm-guard/reset", {}).status_code == 200
    time.sleep(2.5)  # every worker has read the switch
    assert not any(get(srv.base, "/v1/model").json()["arm_guard_tripped"] for _ in range(8))
    assert workers_that_decided(shared) == 2
