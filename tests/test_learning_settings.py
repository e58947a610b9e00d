"""Personalizer learning settings (VW arguments) round-trip through policy specs."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bandit.config.learning_settings import arguments_of, spec_from_arguments
from bandit.core.policy_spec import PolicySpec

kinds = st.sampled_from(["epsilon:0.05", "epsilon:0.2", "bag:5", "squarecb:10", "squarecb:100",
                         "softmax:10"])
extras = st.lists(st.sampled_from(["lr=3", "lr=0.1", "cb_type=dr", "cb_type=ips",
                                   "normalized=0", "power_t=0", "l2=0.0001",
                                   "interactions=co+cc", "interactions=co+cco",
                                   "interactions=oc+oo", "bits=20"]),
                  unique_by=lambda x: x.split("=")[0], max_size=4)


@settings(max_examples=150, deadline=None)
@given(kinds, extras)
def test_the_arguments_a_spec_shows_describe_the_same_model(kind, more):
    try:
        spec = PolicySpec.parse(",".join([kind, *more]))
    except ValueError:  # a combination VW refuses (squarecb with another cb_type)
        assume(False)
    again = spec_from_arguments(arguments_of(spec))
    assert again.vw_args(7) == spec.vw_args(7)


def test_wildcard_interactions_are_accepted_and_the_default_crossing_kept():
    spec = spec_from_arguments("--cb_explore_adf --epsilon 0.2 --power_t 0 -q ::")
    assert spec.vw_args(1) == PolicySpec.parse("epsilon:0.2,power_t=0").vw_args(1)
