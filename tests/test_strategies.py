"""The strategies a decision is composed of: providers by serving mode, adjustments."""

import pytest

from bandit.core.adjustments import Diversity, NewOfferFloor, SafeDelta
from bandit.core.features import ID_NAMESPACE
from bandit.core.lgbm_policy import LGBMPolicy
from bandit.core.offerstats import OfferStats
from bandit.core.pmfs import (
    ApprenticePmf,
    FixedPmf,
    ModelPmf,
    PopularityPmf,
    Slot,
    UniformPmf,
    VWScorer,
    normalise,
)
from bandit.core.policy import RankingOptions, Serving, VWPolicy, strategy
from bandit.core.policy_spec import PolicySpec
from bandit.core.types import DecideRequest, Offer
from bandit.core.vw_adapter import VWModel, action_line


def offers(*cats):
    out = []
    for i, cat in enumerate(cats):
        ns = {ID_NAMESPACE: {f"id=o{i}": 1.0}, "o": {f"category={cat}": 1.0}}
        out.append(Offer(f"o{i}", ns, action_line(ns)))
    return tuple(out)


@pytest.fixture(scope="module")
def serving():
    spec = PolicySpec.parse("epsilon:0.1")
    model = VWModel(spec.vw_args(0))
    yield Serving(VWScorer(model), "1", None, 0)
    model.close()


def stats_of(**impressions):
    s = OfferStats()
    for oid, n in impressions.items():
        for _ in range(n):
            s.add(oid, 1.0 if oid == "o0" else 0.0, 0.5)
    return s


@pytest.mark.parametrize(("mode", "kind", "path"), [
    ("model", ModelPmf, "model"), ("popularity", PopularityPmf, "popularity"),
    ("uniform", UniformPmf, "uniform"), ("fixed", FixedPmf, "fixed"),
    ("apprentice", ApprenticePmf, "apprentice"), ("other", ModelPmf, "other")])
def test_each_mode_has_its_provider(serving, mode, kind, path):
    provider, _ = strategy(mode, serving, RankingOptions(), DecideRequest("e", {}, offers("a")))
    assert isinstance(provider, kind) and provider.path == path
    # only the learned policy and popularity are adjusted (and greedy without exploring)
    assert provider.adjustable == (mode in ("model", "popularity"))


def test_a_young_model_serves_popularity(serving):
    young = Serving(serving.scorer, "1", stats_of(o0=3), events_learned=5)
    req = DecideRequest("e", {}, offers("a"))
    provider, _ = strategy("model", young, RankingOptions(warmup_events=10), req)
    assert isinstance(provider, PopularityPmf)
    provider, _ = strategy("model", young, RankingOptions(warmup_events=5), req)
    assert isinstance(provider, ModelPmf)


def test_adjustments_apply_to_exploring_decisions_with_statistics(serving):
    opts = RankingOptions(new_offer_floor=0.05, safe_delta=0.1, diversity=0.5)
    with_stats = Serving(serving.scorer, "1", stats_of(o0=3))

    def kinds(s, **kw):
        return [type(a) for a in strategy("model", s, opts,
                                          DecideRequest("e", {}, offers("a"), **kw))[1]]

    assert kinds(with_stats) == [NewOfferFloor, SafeDelta, Diversity]
    assert kinds(with_stats, explore=False) == [Diversity]
    assert kinds(serving) == [Diversity]  # no statistics: no floor, no safe δ
    assert strategy("fixed", with_stats, opts, DecideRequest("e", {}, offers("a")))[1] == []


def slot(request, k=0, shown=()):
    return Slot(request, k, request.offers, list(range(len(request.offers))), list(shown))


def test_the_floor_lifts_new_offers_only_when_some_are_known():
    s = slot(DecideRequest("e", {}, offers("a", "b", "c")))
    floor = NewOfferFloor(2, 0.1, stats_of(o0=5))
    assert floor([1.0, 0.0, 0.0], s) == pytest.approx([0.8, 0.1, 0.1])
    assert NewOfferFloor(2, 0.1, OfferStats())([1.0, 0.0, 0.0], s) == [1.0, 0.0, 0.0]


def test_the_floor_spares_a_new_offer_already_shown_well_above_it():
    s = slot(DecideRequest("e", {}, offers("a", "b", "c")))
    stats = stats_of(o0=500)
    for _ in range(12):  # o1: 12 impressions, each shown with probability 0.5
        stats.add("o1", 1.0, 0.5)
    for _ in range(12):  # o2: 12 impressions, each found by 5% exploration
        stats.add("o2", 0.0, 0.05)
    assert stats.exposure("o1") == pytest.approx(0.5)
    assert stats.exposure("o2") == pytest.approx(0.05)
    floor = NewOfferFloor(100, 0.1, stats)
    # o1 (exposure 0.5 >= 2 x 0.1) needs no floor; o2 (0.05) and the unseen o3 get it
    assert floor([1.0, 0.0, 0.0], s) == pytest.approx([0.9, 0.0, 0.1])
    s3 = slot(DecideRequest("e", {}, offers("a", "b", "c", "d")))
    assert floor([1.0, 0.0, 0.0, 0.0], s3) == pytest.approx([0.8, 0.0, 0.1, 0.1])
    for _ in range(88):  # o2 reaches 100 impressions: no longer new
        stats.add("o2", 0.0, 0.05)
    assert floor([1.0, 0.0, 0.0], s) == [1.0, 0.0, 0.0]
    # below EXPOSED_EVIDENCE impressions exposure is not trusted yet
    few = stats_of(o0=500)
    for _ in range(9):
        few.add("o1", 1.0, 1.0)
    assert NewOfferFloor(100, 0.1, few)([1.0, 0.0, 0.0], s) == pytest.approx([0.8, 0.1, 0.1])


def test_the_floor_is_a_minimum_not_a_mixture():
    s = slot(DecideRequest("e", {}, offers("a", "b", "c", "d")))
    floor = NewOfferFloor(2, 0.1, stats_of(o0=5, o1=5))
    # o3 (new) already above the floor keeps 0.3; o2 (new) is raised to 0.1 and the
    # others give it up in proportion
    pmf = floor([0.6, 0.1, 0.0, 0.3], s)
    assert pmf == pytest.approx([0.6 * 0.9, 0.1 * 0.9, 0.1, 0.3 * 0.9])
    assert sum(pmf) == pytest.approx(1.0)
    # scaling down can take another new offer below the floor: it is raised too
    # (o3's 0.105 scaled by 0.9 would be 0.0945)
    assert floor([0.895, 0.0, 0.0, 0.105], s) == pytest.approx([0.8, 0.0, 0.1, 0.1])


def test_safe_delta_keeps_exploration_on_offers_near_the_best():
    s = slot(DecideRequest("e", {}, offers("a", "b", "c")))
    pmf = SafeDelta(0.05, stats_of(o0=50, o1=50, o2=50))([0.2, 0.5, 0.3], s)
    assert pmf[0] > 0 and pmf[1] > 0 and pmf[2] == 0  # o0 pays; o1 is the greedy choice


def test_diversity_discounts_a_shown_category_from_slot_two():
    req = DecideRequest("e", {}, offers("a", "a", "b"), slots=2)
    div = Diversity(1.0, "category")
    assert div([0.5, 0.5, 0.0], slot(req)) == [0.5, 0.5, 0.0]  # slot 1: nothing shown
    assert div([0.0, 0.6, 0.4], slot(req, 1, shown=[0])) == [0.0, 0.0, 1.0]
    # every offer left shares the shown category: unchanged rather than nothing
    assert div([0.0, 1.0, 0.0], slot(req, 1, shown=[0])) == [0.0, 1.0, 0.0]


def test_negative_weights_count_zero():
    # VW's squarecb with elim returned [-2, 1, 1, 1] for a fresh model on extreme values
    assert normalise([-2.0, 1.0, 1.0, 1.0]) == pytest.approx([0.0, 1 / 3, 1 / 3, 1 / 3])
    assert normalise([-1.0, 0.0]) == [0.5, 0.5]  # no mass left: uniform


def test_slot_contexts_carry_the_position_from_slot_two():
    req = DecideRequest("e", {"u": {"x": 1.0}}, offers("a", "b", "c"), slots=3)
    assert slot(req).context is req.context
    assert slot(req, 2).context == {"u": {"x": 1.0}, "cslot": {"k=3": 1.0}}


def test_lightgbm_is_not_a_vw_policy():
    assert not issubclass(LGBMPolicy, VWPolicy)
