import pytest
import vowpalwabbit

from bandit.policy_spec import PolicySpec


@pytest.mark.parametrize("text,expect", [
    ("epsilon", "--epsilon 0.05"),
    ("epsilon:0.2", "--epsilon 0.2"),
    ("bag", "--bag 5"),
    ("bag:7,epsilon=0.01", "--bag 7 --epsilon 0.01"),
    ("squarecb", "--squarecb --gamma_scale 10"),
    ("squarecb:gamma=40", "--squarecb --gamma_scale 40"),
    ("softmax:3", "--softmax --lambda 3"),
    ("epsilon,bits=20,cb_type=ips", "-b 20 --cb_type ips"),
])
def test_compiles_to_vw_arguments(text, expect):
    spec = PolicySpec.parse(text)
    args = spec.vw_args()
    assert expect in args
    assert "--cb_explore_adf" in args and "-q co" in args and "--hash all" in args
    assert PolicySpec.parse(str(spec)) == spec  # canonical text round-trips
    vowpalwabbit.Workspace(args).finish()  # VW accepts it


@pytest.mark.parametrize("text,message", [
    ("", "empty"), ("thompson", "unknown policy kind"), ("epsilon:1.5", "epsilon"),
    ("bag:0", "bag"), ("bag:2.5", "integer"), ("epsilon:x", "not a number"),
    ("softmax:-1", "lambda"), ("epsilon,foo=1", "bad parameter"), ("epsilon,bits=99", "bits"),
    ("epsilon,cb_type=zzz", "cb_type"), ("epsilon:inf", "finite"),
])
def test_rejects_bad_specs(text, message):
    with pytest.raises(ValueError, match=message):
        PolicySpec.parse(text)


def test_specs_are_immutable_and_hashable():
    a, b = PolicySpec.parse("bag:5"), PolicySpec.parse("bag:5")
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.kind = "epsilon"  # type: ignore[misc]
