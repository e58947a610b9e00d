"""Heads over VW, exploration over objective scores, and decisions whose logged
probabilities are the ones drawn with."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from bandit.core.types import DecideRequest, Offer
from bandit.core.vw_adapter import action_line
from bandit.value.heads import (
    Exploration,
    Head,
    Heads,
    HeadSpec,
    ValuePolicy,
    numeric_fields,
)
from bandit.value.objective import Objective

CONTEXT = {"cuser": {"device=mobile": 1.0}}


def offer(i: int, payout: float) -> Offer:
    ns = {"o_id": {f"id=o{i}": 1.0}, "ooffer": {"payout": payout}}
    return Offer(f"o{i}", ns, action_line(ns))


OFFERS = tuple(offer(i, p) for i, p in enumerate([1.0, 10.0, 5.0, 2.0]))


def test_head_spec_compiles_to_vw_arguments():
    spec = HeadSpec.parse("bits=20,lr=0.1,interactions=co+cco,cb_type=dr")
    assert spec.vw_args(3) == ("--cb_adf --cb_type dr --hash all --quiet --random_seed 3 "
                               "-b 20 -q co --cubic cco -l 0.1")
    assert HeadSpec.parse("") == HeadSpec()


@pytest.mark.parametrize("text", ["bits=4", "cb_type=foo", "lr=0", "lr=x", "interactions=c",
                                  "gamma=3", "bits"])
def test_bad_head_specs(text):
    with pytest.raises(ValueError):
        HeadSpec.parse(text)


def test_exploration_by_hand():
    s = [1.0, 0.5, 0.0]
    assert Exploration.parse("greedy").pmf(s) == [1.0, 0.0, 0.0]
    assert Exploration.parse("epsilon:0.3").pmf(s) == pytest.approx([0.8, 0.1, 0.1])
    # squarecb, γ = 2 at t = 1, S = 1: 1/(3 + 2·0.5), 1/(3 + 2·1), the rest on the best
    assert Exploration.parse("squarecb:2").pmf(s, 1) == pytest.approx(
        [1 - 0.25 - 0.2, 0.25, 0.2])
    # γ grows with √t
    assert Exploration.parse("squarecb:2").pmf(s, 4)[2] == pytest.approx(1 / 7)
    sm = Exploration.parse("softmax:2").pmf(s)
    assert sm == pytest.approx(np.exp([0, -1, -2]) / np.exp([0, -1, -2]).sum())
    for e in ("epsilon:0.1", "softmax:5", "squarecb:10"):
        assert sum(Exploration.parse(e).pmf([0.0, -3.0, 2.0, 2.0])) == pytest.approx(1)
    for bad in ("thompson", "epsilon:2", "squarecb:-1", "softmax:x"):
        with pytest.raises(ValueError):
            Exploration.parse(bad)


def test_numeric_fields():
    ns = {"ooffer": {"payout": 3.0, "brand=a": 1.0}, "ox": {"payout": 4.0, "size": 2.0}}
    assert numeric_fields(ns) == {"offer.payout": 3.0, "x.payout": 4.0, "x.size": 2.0,
                                  "size": 2.0}


def _learned_heads(n: int = 3000, seed: int = 0) -> Heads:
    """Click rate per offer 0.4, 0.1, 0.2, 0.3; conversion 0.05, 0.08, 0.02, 0.01; logged
    by a skewed random policy."""
    rng = np.random.default_rng(seed)
    heads = Heads.fresh(("click", "conversion"), HeadSpec(lr=0.1, power_t=1.0), seed)
    click, conv = [0.4, 0.1, 0.2, 0.3], [0.05, 0.08, 0.02, 0.01]
    logging = np.array([0.1, 0.2, 0.3, 0.4])
    lines = [o.line for o in OFFERS]
    for _ in range(n):
        a = int(rng.choice(4, p=logging))
        heads.learn(CONTEXT, lines, a, {"click": float(rng.random() < click[a]),
                                        "conversion": float(rng.random() < conv[a])},
                    float(logging[a]))
    return heads


@pytest.fixture(scope="module")
def heads() -> Heads:
    return _learned_heads()


def test_heads_learn_each_kind_from_the_same_decisions(heads):
    pred = heads.predict(CONTEXT, [o.line for o in OFFERS])
    assert pred["click"] == pytest.approx([0.4, 0.1, 0.2, 0.3], abs=0.06)
    assert pred["conversion"] == pytest.approx([0.05, 0.08, 0.02, 0.01], abs=0.03)
    assert heads.learned == 3000


def test_changing_the_objective_changes_the_ranking_without_learning(heads):
    req = DecideRequest("e", CONTEXT, OFFERS, explore=False)
    pol = ValuePolicy(heads, Objective.parse("click", heads.kinds), Exploration("greedy"))
    assert OFFERS[pol.decide(req).order[0]].id == "o0"
    learned = heads.learned
    pol.set_objective(Objective.parse("conversion * payout", heads.kinds))
    d = pol.decide(req)
    assert OFFERS[d.order[0]].id == "o1" and d.probabilities[0] == 1.0
    assert heads.learned == learned
    assert d.info["objective"] == "conversion * payout"
    with pytest.raises(ValueError, match="heads this policy does not have: value"):
        pol.set_objective(Objective.parse("value", ("value",)))


def test_logged_probabilities_are_the_draw_frequencies(heads):
    pol = ValuePolicy(heads, Objective.parse("click + conversion * payout", heads.kinds),
                      Exploration.parse("epsilon:0.4"), seed=7)
    logged: dict[str, float] = {}
    counts: Counter[str] = Counter()
    n = 4000
    for t in range(n):
        d = pol.decide(DecideRequest(f"ev-{t}", CONTEXT, OFFERS))
        oid = OFFERS[d.order[0]].id
        counts[oid] += 1
        logged[oid] = d.probabilities[0]
        # every offer's slot-1 probability is in the ranking and they sum to 1
        assert sum(d.probabilities) == pytest.approx(1)
    for oid, p in logged.items():
        assert abs(counts[oid] / n - p) < 4 * math.sqrt(p * (1 - p) / n), (oid, p, counts)


def test_removed_offers_are_never_drawn_and_weights_shape_the_pmf(heads):
    pol = ValuePolicy(heads, Objective.parse("click", heads.kinds),
                      Exploration.parse("epsilon:1"))

    def adjust(slot, remaining, shown):
        return [0.0 if OFFERS[i].id == "o0" else (0.5 if OFFERS[i].id == "o1" else 1.0)
                for i in remaining]

    d = pol.decide(DecideRequest("x", CONTEXT, OFFERS), adjust=adjust)
    pmf = {OFFERS[i].id: p for i, p in zip(d.order, d.probabilities, strict=True)}
    # uniform over o1..o3, o1 halved: 0.5/2.5, 1/2.5, 1/2.5; o0 removed
    assert pmf == pytest.approx({"o0": 0.0, "o1": 0.2, "o2": 0.4, "o3": 0.4})
    assert d.info["removed"] == ["o0"]
    none = pol.decide(DecideRequest("y", CONTEXT, OFFERS),
                      adjust=lambda k, r, s: [0.0] * len(r))
    assert none.slots == 0 and set(none.probabilities) == {0.0}


def test_slots_are_distinct_with_conditional_probabilities(heads):
    pol = ValuePolicy(heads, Objective.parse("click", heads.kinds),
                      Exploration.parse("epsilon:1"))
    d = pol.decide(DecideRequest("s", CONTEXT, OFFERS, slots=3))
    assert d.slots == 3 and len(set(d.order)) == 4
    assert list(d.probabilities[:3]) == pytest.approx([1 / 4, 1 / 3, 1 / 2])


def test_a_missing_field_names_the_offer(heads):
    pol = ValuePolicy(heads, Objective.parse("click * margin", heads.kinds))
    with pytest.raises(KeyError, match="offer 'o0' has no numeric field 'margin'"):
        pol.decide(DecideRequest("m", CONTEXT, OFFERS))
    d = pol.decide(DecideRequest("m", CONTEXT, OFFERS), fields=[{"margin": 1.0}] * 4)
    assert d.slots == 1


def test_a_conditional_head_learns_only_given_its_reward():
    h = Head.fresh("cvr", reward="conversion", given="click")
    heads = Heads({"cvr": h})
    lines = [o.line for o in OFFERS]
    heads.learn(CONTEXT, lines, 0, {"click": 0.0, "conversion": 0.0}, 0.5)
    assert h.learned == 0
    heads.learn(CONTEXT, lines, 0, {"click": 1.0, "conversion": 1.0}, 0.5)
    assert h.learned == 1
    with pytest.raises(ValueError, match="logged probability"):
        h.learn(CONTEXT, lines, 0, 1.0, 0.0)


def test_a_head_applies_its_calibrator_in_predict_only(heads):
    from bandit.value.calibration import CalibrationWindow

    h = heads.by_kind["click"]
    lines = [o.line for o in OFFERS]
    raw = h.predict_raw(CONTEXT, lines)
    win = CalibrationWindow("isotonic", size=10, min_events=2)
    win.add(0.0, 0.0)
    win.add(1.0, 1.0)  # the identity on [0, 1], clamped outside
    h.calibrate = win
    try:
        assert list(h.predict(CONTEXT, lines)) == pytest.approx(list(np.clip(raw, 0, 1)))
        assert list(h.predict_raw(CONTEXT, lines)) == list(raw)
    finally:
        h.calibrate = None
