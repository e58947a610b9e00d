"""The budget pacer's spend stores: the in-memory twin and the SQLite ledger a host's
workers share agree for one worker; two pacers on one ledger (two workers) keep the
host within the stated bound over a day; a new pacer on a ledger resumes its day;
a new UTC day starts at 0."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest

from bandit.value.constraints import DAY, BudgetPacer, OfferFacts
from bandit.value.spend_ledger import MemorySpends, SpendStore, SqliteSpends

BUDGETS = {"a": 60.0, "b": 30.0}  # "c" has none
OFFERS = [OfferFacts(f"{adv}{i}", advertiser=adv, price=price)
          for adv, prices in (("a", (1.0, 2.5)), ("b", (0.5, 1.5)), ("c", (1.0,)))
          for i, price in enumerate(prices)]
SLOTS = 2
# the most one decision spends on a key: its slots times the key's largest price
MOST = {k: SLOTS * max(o.price for o in OFFERS if o.advertiser == k) for k in BUDGETS}
DAY0 = 20_000 * DAY


def decide(p: BudgetPacer, rng: random.Random, now: float) -> list[OfferFacts]:
    """Up to ``SLOTS`` offers drawn in proportion to the pacer's weights, recorded."""
    shown: list[OfferFacts] = []
    for _ in range(SLOTS):
        left = [o for o in OFFERS if o not in shown]
        w = p.weights(left, shown, now)
        if not any(w):
            break
        shown.append(rng.choices(left, w)[0])
    p.record(shown, now)
    return shown


def simulate(stores: list[SpendStore], seed: int = 11, bursts: int = 240,
             per_burst: int = 40, step: float = 0.004) -> tuple[dict[str, float],
                                                                 dict[str, float]]:
    """A UTC day of bursts of decisions ``step`` seconds apart (denser than the pacers'
    refresh), each by a pacer chosen at random. Returns the day's spend per key (the
    shown offers' prices) and its largest excess over the pace at any decision."""
    rng = random.Random(seed)
    pacers = [BudgetPacer(BUDGETS, burst=0.05, store=s) for s in stores]
    spent = dict.fromkeys(BUDGETS, 0.0)
    excess = dict.fromkeys(BUDGETS, -float("inf"))
    for b in range(bursts):
        start = DAY0 + (b + 0.5 * rng.random()) * DAY / bursts
        for j in range(per_burst):
            now = start + j * step
            for o in decide(rng.choice(pacers), rng, now):
                if o.advertiser in spent:
                    spent[o.advertiser] += o.price
            for k in BUDGETS:
                excess[k] = max(excess[k], spent[k] - pacers[0].allowed(k, now))
    return spent, excess


def test_two_workers_on_one_ledger_stay_within_the_bound(tmp_path):
    path = tmp_path / "budgets.sqlite"
    spent, excess = simulate([SqliteSpends(path), SqliteSpends(path)])
    for k, budget in BUDGETS.items():
        # with two workers: never more than one decision's spend over the pace
        assert excess[k] <= MOST[k] + 1e-9, (k, excess[k], MOST[k])
        assert budget - MOST[k] <= spent[k] <= budget + MOST[k], (k, spent[k])
    assert SqliteSpends(path).totals(int(DAY0 // DAY)) == pytest.approx(spent)
    # the same day with a ledger per worker (what each worker kept before): about twice
    apart, _ = simulate([MemorySpends(), MemorySpends()])
    for k, budget in BUDGETS.items():
        assert apart[k] > 1.8 * budget, (k, apart[k])


def test_a_worker_takes_the_host_total_from_its_own_impression_s_write(tmp_path):
    """Between reads, a pacer's view of a key is the total its own impression's write
    returned, every worker's spend included: after one impression it paces on the
    host's spend, not on its own."""
    path = tmp_path / "budgets.sqlite"
    noon = DAY0 + DAY / 2  # 55 allowed: half of 100, plus the burst of 5
    a = BudgetPacer({"a": 100.0}, burst=0.05, store=SqliteSpends(path))
    b = BudgetPacer({"a": 100.0}, burst=0.05, store=SqliteSpends(path))
    two = [OfferFacts("a1", advertiser="a", price=2.0)]
    assert a.weights(two, [], noon) == b.weights(two, [], noon) == [1.0]  # both read: 0
    a.record([OfferFacts("a2", advertiser="a", price=50.0)], noon)
    assert b.weights(two, [], noon) == [1.0]  # b has not read since (same instant)
    b.record([OfferFacts("a1", advertiser="a", price=1.0)], noon)
    assert b.spent == {"a": 51.0}  # the ledger's total, a's 50 included
    # 55 − 51 − 2 leaves 2 of the 5 of burst → 0.4 (on b's own spend alone it would be 1)
    assert b.weights(two, [], noon) == [pytest.approx(0.4)]


def test_the_memory_twin_and_the_ledger_agree_for_one_worker(tmp_path):
    mem = BudgetPacer(BUDGETS, burst=0.05)
    led = BudgetPacer(BUDGETS, burst=0.05, store=SqliteSpends(tmp_path / "b.sqlite"))
    rng_m, rng_l, times = random.Random(5), random.Random(5), random.Random(6)
    now = DAY0 + DAY - 1800  # the last half hour of a day, into the next
    for _ in range(3000):
        now += times.expovariate(1.0)
        left = OFFERS[times.randrange(len(OFFERS)):]
        assert mem.weights(left, [], now) == led.weights(left, [], now)
        assert decide(mem, rng_m, now) == decide(led, rng_l, now)
        assert mem.spent == led.spent
    assert mem.day == led.day == int(DAY0 // DAY) + 1
    assert {k: v for k, v in mem.state().items() if k != "ledger"} == \
        {k: v for k, v in led.state().items() if k != "ledger"}
    assert mem.state()["spent"]


def test_a_new_pacer_on_the_ledger_resumes_the_day(tmp_path):
    path = tmp_path / "budgets.sqlite"
    noon = DAY0 + DAY / 2
    before = BudgetPacer({"a": 100.0}, burst=0.05, store=SqliteSpends(path))
    before.record([OfferFacts("a1", advertiser="a", price=50.0)], noon)
    after = BudgetPacer({"a": 100.0}, burst=0.05, store=SqliteSpends(path))  # a restart
    assert after.state()["spent"] == {"a": 50.0}
    # 50 spent, 55 allowed at noon: a price of 2 leaves 3 of the 5 of burst → 0.6
    assert after.weights([OfferFacts("a1", advertiser="a", price=2.0)], [], noon) == \
        [pytest.approx(0.6)]
    assert after.weights([OfferFacts("a1", advertiser="a", price=6.0)], [], noon) == [0.0]


def test_a_new_utc_day_starts_at_zero_and_drops_the_old_rows(tmp_path):
    path = tmp_path / "budgets.sqlite"
    p = BudgetPacer({"a": 100.0}, burst=0.05, store=SqliteSpends(path))
    late = DAY0 + DAY - 1
    p.record([OfferFacts("a1", advertiser="a", price=90.0)], late)
    assert p.weights([OfferFacts("a1", advertiser="a", price=20.0)], [], late) == [0.0]
    other = BudgetPacer({"a": 100.0}, burst=0.05, store=SqliteSpends(path))
    # at midnight the allowance is the burst (5): a price of 2 → weight 0.6
    assert other.weights([OfferFacts("a1", advertiser="a", price=2.0)], [], late + 1) == \
        [pytest.approx(0.6)]
    assert other.state()["spent"] == {} and other.state()["day"] == int(DAY0 // DAY) + 1
    assert rows(path) == []
    other.record([OfferFacts("a1", advertiser="a", price=2.0)], late + 1)
    assert rows(path) == [(int(DAY0 // DAY) + 1, "a", 2.0)]
    # the first worker still on yesterday's view reads the new day at its next decision
    assert p.state()["spent"] == {"a": 2.0}


def rows(path: Path) -> list[tuple[int, str, float]]:
    db = sqlite3.connect(path)
    try:
        return [tuple(r) for r in db.execute("SELECT day, key, spent FROM spend")]
    finally:
        db.close()


def test_a_locked_ledger_fails_soft_and_catches_up(tmp_path):
    """The ledger is on the request path: a writer holding the file's lock makes a
    write wait at most BUSY_SECONDS, the spend is kept in the process and written with
    the next write that gets through; totals read meanwhile include it."""
    from bandit.value.spend_ledger import BUSY_SECONDS

    path = tmp_path / "budgets.sqlite"
    store = SqliteSpends(path)
    assert store.add(7, "a", 1.0) == 1.0
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another worker holding the write lock
    other.execute("UPDATE spend SET spent = spent + 10 WHERE key = 'a'")
    t0 = time.monotonic()
    assert store.add(7, "a", 2.0) == 3.0  # what this process knows: 1 read + 2 unsaved
    took = time.monotonic() - t0
    assert BUSY_SECONDS * 0.9 <= took < BUSY_SECONDS + 0.25, took  # waited, then gave up
    assert store.errors == 1 and store.totals(7)["a"] == 3.0
    other.execute("COMMIT")
    assert store.add(7, "a", 4.0) == 17.0  # 1 + 10 (the other's) + 2 (unsaved) + 4
    assert store.totals(7) == {"a": 17.0}
    other.close()


def test_a_ledger_that_cannot_be_read_falls_back_to_the_last_totals_read(tmp_path,
                                                                         monkeypatch):
    store = SqliteSpends(tmp_path / "budgets.sqlite")
    store.add(7, "a", 1.0)
    store.add(7, "b", 2.0)
    assert store.totals(7) == {"a": 1.0, "b": 2.0}

    class Broken:
        def execute(self, *args: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_db", lambda: Broken())
    assert store.add(7, "a", 4.0) == 5.0  # the write fails: last read 1 + unsaved 4
    assert store.totals(7) == {"a": 5.0, "b": 2.0}  # the read fails: last read + unsaved
    assert store.latest() == (7, {"a": 5.0, "b": 2.0})
    assert store.errors == 4  # the write, the read, and latest()'s two
    monkeypatch.undo()
    assert store.add(7, "a", 0.5) == 5.5  # the unsaved 4 written with it
    assert store.totals(7) == {"a": 5.5, "b": 2.0}
    assert rows(tmp_path / "budgets.sqlite") == [(7, "a", 5.5), (7, "b", 2.0)]


def test_an_unwritable_ledger_falls_back_to_memory(tmp_path, caplog):
    from bandit.value.value_settings import ConstraintSpec

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    spec = ConstraintSpec.parse("", "", "acme=10")
    built = spec.build(blocker / "models" / "budgets.sqlite")
    assert built is not None
    pacer = next(c for c in built.constraints if isinstance(c, BudgetPacer))
    assert isinstance(pacer.store, MemorySpends)
    assert "cannot be opened" in caplog.text


@pytest.mark.parametrize("ledger", ["", "pod/budgets.sqlite", "memory"])
def test_the_server_keeps_the_ledger_where_budget_ledger_says(tmp_path, ledger):
    from bandit.config.settings import Settings
    from bandit.core.schema import Limits
    from bandit.server.app import make_value_ranking
    from bandit.value.catalogue_view import CatalogueView

    models = tmp_path / "models"
    models.mkdir()
    env = {"BANDIT_MODEL_DIR": str(models), "BANDIT_OBJECTIVE": "click",
           "BANDIT_DAILY_BUDGETS": "a=10"}
    if ledger:
        env["BANDIT_BUDGET_LEDGER"] = str(tmp_path / ledger) if ledger != "memory" else ledger
    if ledger.startswith("pod"):
        (tmp_path / "pod").mkdir()
    settings = Settings.from_env(env)
    ranking = make_value_ranking(settings, None, CatalogueView(models / "c.sqlite", Limits()))
    assert ranking is not None
    made = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.sqlite"))
    assert made == {"": ["models/budgets.sqlite"], "pod/budgets.sqlite": ["pod/budgets.sqlite"],
                    "memory": []}[ledger]
