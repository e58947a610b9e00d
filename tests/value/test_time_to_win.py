"""Time-to-win of a new near-copy of the best offer, with and without the cold-start
prior from text embeddings (real WordLlama, real VW; defined in
:mod:`tests.value.time_to_win`): seed 1's figures as the README states them, for
catalogue offers with the simulator's features and for offers with text and payout
only, and what the prior does when the near-copy arrives."""

from __future__ import annotations

import pytest

from tests.readme_figures import figure, near
from tests.value.time_to_win import HORIZON, Market, Measurement, measure

pytest.importorskip("wordllama")

pytestmark = pytest.mark.slow

SEED = 1
VARIANTS = {"features": "offers with the simulator's features",
            "text": "text and payout only"}
NUMBER = r"(> [\d,]+|[\d,]+)"


@pytest.fixture(scope="module")
def embeddings():
    from bandit.value.embeddings import OfferEmbeddings

    return OfferEmbeddings()


@pytest.fixture(scope="module", params=list(VARIANTS))
def measured(request, embeddings) -> tuple[str, Measurement]:
    market = Market.make(features=request.param == "features")
    return request.param, measure(SEED, embeddings, market)


def stated(variant: str) -> tuple[str, str]:
    """The README's seed-1 time-to-win with and without embeddings."""
    lead = rf"{VARIANTS[variant]}: \*\*"
    with_ = figure(lead + NUMBER + r" with embeddings against")
    without = figure(lead + r"[^*]*? with embeddings against " + NUMBER + r" without\*\*")
    return with_, without


def matches(measured: int | None, text: str) -> bool:
    """``> H`` states no win within the horizon H."""
    if text.startswith(">"):
        return measured is None and int(text[1:].replace(",", "")) == HORIZON
    return measured is not None and near(measured, text.replace(",", ""))


def test_seed_1_time_to_win_is_the_readme_s(measured):
    variant, m = measured
    with_, without = stated(variant)
    assert matches(m.with_embeddings.time_to_win, with_), (variant, m.with_embeddings, with_)
    assert matches(m.without.time_to_win, without), (variant, m.without, without)


def test_the_prior_raises_the_near_copy_s_wins_on_arrival(measured):
    """Before any decision with it, the prior alone decides how often the near-copy wins
    where it should: more often with it than with the head's own prediction."""
    _, m = measured
    assert m.with_embeddings.blended > 0 and m.without.blended == 0
    assert m.with_embeddings.shares[0] > m.without.shares[0] + 0.05, \
        (m.with_embeddings.shares[0], m.without.shares[0])
