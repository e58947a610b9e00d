"""Each constraint by hand, and their set as a decision's ``adjust`` callback."""

from __future__ import annotations

import pytest

from bandit.value.constraints import (
    DAY,
    BudgetPacer,
    ConstraintSet,
    MinMargin,
    OfferFacts,
    ShareCap,
)


def facts(i: str, adv: str = "a", payout: float = 10.0, cost: float = 0.0,
          price: float = 1.0, cat: str | None = None) -> OfferFacts:
    return OfferFacts(i, payout, cost, None, adv, cat, price)


def test_min_margin_removes_offers_below_it():
    c = MinMargin(2.0)
    offers = [facts("x", payout=5, cost=4), facts("y", payout=5, cost=3),
              OfferFacts("z", margin=1.0)]
    assert c.weights(offers, [], 0.0) == [0.0, 1.0, 0.0]
    assert c.state() == {"minimum": 2.0, "removed": 2}


def test_share_cap_counts_a_sliding_window():
    c = ShareCap("advertiser", share=0.5, window=4)  # at most 2 of the last 4
    a, b = facts("1", "a"), facts("2", "b")
    c.record([a, a], 0)
    assert c.weights([a, b], [], 0) == [0.0, 1.0]
    c.record([b, b], 0)  # window a a b b: a showing now evicts the oldest a
    assert c.weights([a, b], [], 0) == [1.0, 0.0]
    # an impression already drawn in this decision counts: after b, another b would
    # make the window b b b b (the two oldest a leave)
    assert c.weights([b], [b], 0) == [0.0]
    assert c.weights([a], [a], 0) == [1.0]  # b b a a
    assert c.state()["counts"] == {"a": 2, "b": 2}


def test_share_cap_by_category_ignores_offers_without_one():
    c = ShareCap("category", share=0.25, window=4)
    c.record([facts("1", cat="x")], 0)
    assert c.weights([facts("2", cat="x"), facts("3")], [], 0) == [0.0, 1.0]


@pytest.mark.parametrize("kw", [dict(share=0), dict(share=1.5), dict(window=0),
                                dict(share=0.1, window=5), dict(by="brand")])
def test_share_cap_bad_settings(kw):
    with pytest.raises(ValueError):
        ShareCap(**kw)


def test_budget_pacing_follows_the_time_of_day():
    p = BudgetPacer({"a": 100.0}, burst=0.05)
    noon = 10 * DAY + DAY / 2
    assert p.fraction(noon) == pytest.approx(0.5)
    assert p.allowed("a", noon) == pytest.approx(55.0)
    p.record([facts("1", price=50.0)], noon)
    # 50 spent, 55 allowed: a price of 2 leaves 3 of the 5 of burst → weight 0.6
    assert p.weights([facts("1", price=2.0)], [], noon) == [pytest.approx(0.6)]
    assert p.weights([facts("1", price=6.0)], [], noon) == [0.0]
    # another advertiser without a budget is not limited; nor a free offer
    assert p.weights([facts("2", "b", price=99.0), facts("3", price=0.0)], [], noon) == [1, 1]
    # a new UTC day starts afresh (allowed: the burst, 5)
    assert p.weights([facts("1", price=2.0)], [], 11 * DAY) == [pytest.approx(0.6)]
    assert p.state()["spent"] == {}


def test_budget_profile_shapes_the_target():
    prof = [0.0] * 12 + [1.0] * 12  # all traffic in the afternoon
    p = BudgetPacer({"*": 10.0}, by="all", profile=prof)
    assert p.fraction(DAY * 3 + 6 * 3600) == 0.0
    assert p.fraction(DAY * 3 + 18 * 3600) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        BudgetPacer({"*": 1.0}, profile=[1.0] * 23)


def test_the_set_multiplies_weights_and_counts_starved_slots():
    s = ConstraintSet([MinMargin(1.0), ShareCap(share=0.5, window=2)])
    offers = [facts("1", "a", payout=0.5), facts("2", "a"), facts("3", "b")]
    adjust = s.adjuster(offers, 0.0)
    assert adjust(0, [0, 1, 2], []) == [0.0, 1.0, 1.0]
    s.record([offers[1]], 0.0)
    assert adjust(1, [0, 2], [1]) == [0.0, 1.0]
    assert adjust(0, [0], []) == [0.0] and s.state()["starved"] == 1
    assert set(s.state()) == {"starved", "min_margin", "share_cap_advertiser"}
