"""Daily budgets per host, on a real 2-worker ``bandit-serve``: the two workers share
one spend ledger in the model dir, so together they spend the budget once (within the
stated bound: with two workers, one decision's spend), not once each; the status page
shows the host's spend, whichever worker renders it; a restarted server resumes the
day's spend."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bandit.value.constraints import DAY, BudgetPacer
from tests.server.test_shared import get, post, two_workers, workers_that_decided

pytestmark = pytest.mark.integration

PRICE = 1.0
TARGET = 30.0  # the spend the pace allows when the test starts
DECISIONS = 400  # each worker alone would spend about the target in half as many


def test_two_workers_spend_the_daily_budget_once(start_server, tmp_path):
    # spending restarts at UTC midnight: a run that would cross it starts after it
    to_midnight = DAY - time.time() % DAY
    if to_midnight < 90:
        time.sleep(to_midnight + 1)
    # the pacer (burst 0.02) allows min(B, B·F(t) + 0.02·B) by time t: choose B so that
    # it allows the target now, whatever the time of day
    start = time.time()
    budget = TARGET / min(1.0, BudgetPacer({"acme": 1.0}).fraction(start) + 0.02)
    srv, shared = two_workers(start_server, tmp_path, BANDIT_OBJECTIVE="click",
                              BANDIT_VALUE_EXPLORATION="epsilon:1.0",
                              BANDIT_DAILY_BUDGETS=f"acme={budget!r}")
    for i, adv in enumerate(["acme", "acme", "globex", "globex"]):
        r = httpx.put(f"{srv.base}/v1/offers/o{i}", timeout=10, json={
            "features": {"x": float(i)}, "advertiser": adv, "price": PRICE})
        assert r.status_code == 201, r.text
    acme = {"o0", "o1"}

    def decide(i: int) -> list[str]:
        r = post(srv.base, "/v1/decide", {"offers": ["o0", "o1", "o2", "o3"]})
        assert r.status_code == 200, r.text
        assert r.json()["path"] == "value"
        return [s["id"] for s in r.json()["slots"]]

    def spend(n: int) -> float:
        with ThreadPoolExecutor(6) as pool:
            return PRICE * sum(oid in acme for slots in pool.map(decide, range(n))
                               for oid in slots)

    def spend_on_the_page() -> float:
        page = get(srv.base, "/").text
        found = re.search(r"spent&#x27;: \{&#x27;acme&#x27;: ([\d.]+)\}", page)
        assert found is not None, page[-3000:]
        return float(found.group(1))

    spent = spend(DECISIONS)
    end = time.time()
    assert int(start // DAY) == int(end // DAY)  # (the run is far shorter than 90 s)
    allowed = BudgetPacer({"acme": budget}).allowed("acme", end)
    # two workers: at most one decision's spend (one slot at PRICE) over the pace
    assert spent <= allowed + PRICE, (
        f"the host spent {spent} of acme's budget, {allowed:.2f} allowed")
    assert spent >= 0.8 * TARGET  # and the budget was spent, not starved
    deadline = time.monotonic() + 10  # each worker publishes its live counts once a second
    while workers_that_decided(shared) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers_that_decided(shared) == 2
    for _ in range(6):  # whichever worker renders the page: the host's spend
        assert spend_on_the_page() == spent
    assert (tmp_path / "m" / "budgets.sqlite").exists()
    # a restart (a deploy) on the same model dir: the new workers resume the day's spend
    srv.stop()
    srv, _ = two_workers(start_server, tmp_path, BANDIT_OBJECTIVE="click",
                         BANDIT_VALUE_EXPLORATION="epsilon:1.0",
                         BANDIT_DAILY_BUDGETS=f"acme={budget!r}")
    assert spend_on_the_page() == spent
    spent += spend(100)
    end = time.time()
    assert int(start // DAY) == int(end // DAY)  # (the run is far shorter than 90 s)
    allowed = BudgetPacer({"acme": budget}).allowed("acme", end)
    assert spent <= allowed + PRICE, (
        f"after a restart the host spent {spent} of acme's budget, {allowed:.2f} allowed")
    assert spend_on_the_page() == spent
