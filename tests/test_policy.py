import random
from collections import Counter

import pytest

from bandit.core.features import ID_NAMESPACE
from bandit.core.policy import VWPolicy, _draw, _normalise, event_rng
from bandit.core.policy_spec import PolicySpec
from bandit.core.types import DecideRequest, Offer
from bandit.core.vw_adapter import action_line


def offers(n):
    out = []
    for i in range(n):
        ns = {ID_NAMESPACE: {f"id=o{i}": 1.0}}
        out.append(Offer(f"o{i}", ns, action_line(ns)))
    return tuple(out)


def test_sampling_matches_the_pmf():
    pmf = [0.7, 0.2, 0.1]
    rng = random.Random(0)
    n = 20000
    draws = [_draw(pmf, True, rng) for _ in range(n)]
    counts = Counter(j for j, _ in draws)
    for i, p in enumerate(pmf):
        assert counts[i] / n == pytest.approx(p, abs=0.015)  # > 4 standard errors
    assert all(p == pmf[j] for j, p in draws)  # the logged probability is the drawn one


def test_later_slots_report_conditional_probabilities():
    """With a uniform policy (ε = 1) over 3 offers, slot 1 is drawn with 1/3 and slot 2
    among the 2 left with 1/2; the rest keep their slot-1 probability."""
    policy = VWPolicy.fresh(PolicySpec.parse("epsilon:1.0"))
    for i in range(200):
        d = policy.decide(DecideRequest(f"e{i}", {}, offers(3), slots=2))
        assert sorted(d.order) == [0, 1, 2]
        assert d.probabilities == pytest.approx((1 / 3, 1 / 2, 1 / 3))
    policy.close()


def test_exploit_is_greedy_with_probability_one():
    assert _draw([0.1, 0.6, 0.3], False, random.Random(0)) == (1, 1.0)
    policy = VWPolicy.fresh(PolicySpec.parse("epsilon:0.1"))
    d = policy.decide(DecideRequest("e", {}, offers(3), slots=2, explore=False))
    assert d.probabilities == (1.0, 1.0, 0.0)
    policy.close()


def test_degenerate_pmf_falls_back_to_uniform():
    assert _normalise([0.0, 0.0, 0.0]) == [1 / 3] * 3
    assert _normalise([float("nan"), 1.0]) == [0.5, 0.5]


def test_event_rng_is_reproducible():
    assert event_rng("e1", 0).random() == event_rng("e1", 0).random()
    assert event_rng("e1", 0).random() != event_rng("e2", 0).random()
    assert event_rng("e1", 0).random() != event_rng("e1", 1).random()


@pytest.mark.parametrize("spec", ["epsilon:0.1", "bag:5", "squarecb", "softmax:5"])
def test_learns_the_best_offer_per_context(spec):
    """5,000 synthetic events: o1 is best for segment a, o3 for segment b."""
    rng = random.Random(42)
    policy = VWPolicy.fresh(PolicySpec.parse(spec), seed=7)
    offs = offers(5)
    lines = [o.line for o in offs]
    best = {"a": 1, "b": 3}
    for _ in range(5000):
        seg = rng.choice("ab")
        ctx = {"cuser": {f"seg={seg}": 1.0}}
        chosen = rng.randrange(5)
        rate = 0.6 if chosen == best[seg] else 0.2
        reward = 1.0 if rng.random() < rate else 0.0
        policy.model.learn(ctx, lines, chosen, reward, 0.2)
    for seg, want in best.items():
        req = DecideRequest(f"q-{seg}", {"cuser": {f"seg={seg}": 1.0}}, offs, explore=False)
        d = policy.decide(req)
        assert d.order[0] == want, (spec, seg, d)
        assert d.probabilities[0] == 1.0
    policy.close()


def test_decide_returns_every_offer_with_probabilities():
    policy = VWPolicy.fresh(PolicySpec.parse("epsilon:0.2"))
    d = policy.decide(DecideRequest("e", {}, offers(6), slots=3))
    assert sorted(d.order) == list(range(6)) and len(d.probabilities) == 6
    assert all(0 < p <= 1 for p in d.probabilities[:3])
    assert d.model_version == "0" and d.policy == "epsilon:0.2"
    policy.close()


def test_swap_serves_the_new_model_and_closes_the_old_one_later():
    spec = PolicySpec.parse("epsilon")
    policy = VWPolicy.fresh(spec)
    first = policy.model
    from bandit.core.vw_adapter import VWModel

    second, third = VWModel(spec.vw_args()), VWModel(spec.vw_args())
    policy.swap(second, "2")
    assert policy.version == "2" and not first._closed
    policy.swap(third, "3")
    assert first._closed and not second._closed
    assert policy.decide(DecideRequest("e", {}, offers(2))).model_version == "3"
    policy.close()


def test_event_draws_are_the_documented_hash_of_the_event():
    import hashlib

    for eid, seed in (("e1", 0), ("é|x", 7), ("a" * 200, 2**40)):
        got = event_rng(eid, seed)
        want = []
        for block in range(2):  # 6 draws cross a digest boundary
            digest = hashlib.blake2b(eid.encode(), digest_size=32,
                                     key=seed.to_bytes(8, "little"),
                                     salt=block.to_bytes(16, "little")).digest()
            want += [(int.from_bytes(digest[i:i + 8], "little") >> 11) / 2**53
                     for i in range(0, 32, 8)]
        assert [got.random() for _ in range(6)] == want[:6]


def test_event_draws_are_uniform_and_independent_across_events_and_slots():
    """20,000 events: the first draws are uniform (Kolmogorov-Smirnov distance below
    the 1% critical value 1.63/√n) and the first and second draw of an event are
    uncorrelated (|r| below 4/√n)."""
    import numpy as np

    n = 20_000
    draws = np.array([[r.random(), r.random()] for r in
                      (event_rng(f"event-{i}", 11) for i in range(n))])
    assert draws.min() >= 0.0 and draws.max() < 1.0
    for col in (0, 1):
        u = np.sort(draws[:, col])
        ks = max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n))
        assert ks < 1.63 / np.sqrt(n), (col, ks)
    assert abs(np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]) < 4 / np.sqrt(n)


def test_negative_scores_from_vw_are_never_drawn_and_the_logged_probability_is_true():
    """VW's SquareCB with --elim gives a fresh model's first offer -8 and the other
    nine 1 each (they sum to 1). Served: the first never shown, the others each ~1/9
    of the time over 9,000 events (within 4 standard errors), each logged with the
    probability it was drawn with (1/9), every listed probability in [0, 1]."""
    policy = VWPolicy.fresh(PolicySpec.parse("squarecb:gamma=10,elim=1"), seed=0)
    offs = offers(10)
    raw = policy.model.predict({"cuser": {"a=1": 1.0}}, [o.line for o in offs])
    assert min(raw) < 0, raw  # what the service has to cope with
    n, counts = 9000, Counter()
    for i in range(n):
        d = policy.decide(DecideRequest(f"e{i}", {"cuser": {"a=1": 1.0}}, offs, 1))
        counts[d.order[0]] += 1
        assert d.probabilities[0] == pytest.approx(1 / 9)
        assert all(0.0 <= p <= 1.0 for p in d.probabilities)
    assert counts[0] == 0
    se = (1 / 9 * 8 / 9 / n) ** 0.5
    for k in range(1, 10):
        assert abs(counts[k] / n - 1 / 9) < 4 * se, counts
