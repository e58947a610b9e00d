import pytest
import vowpalwabbit

from bandit.core.policy_spec import PolicySpec


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


@pytest.mark.parametrize("text,expect", [
    ("epsilon,interactions=co+cc", "-q co -q cc --hash"),
    ("epsilon,interactions=co+cco", "-q co --cubic cco --hash"),
    ("squarecb:gamma=20,interactions=cc", "--cb_explore_adf -q cc --hash"),
    ("epsilon,normalized=0", "--adaptive --invariant"),
])
def test_optional_interactions_and_normalisation(text, expect, tmp_path):
    spec = PolicySpec.parse(text)
    args = spec.vw_args()
    assert expect in args
    assert PolicySpec.parse(str(spec)) == spec
    ws = vowpalwabbit.Workspace(args)
    ws.save(str(tmp_path / "m.vw"))
    ws.finish()
    loaded = vowpalwabbit.Workspace(f"-i {tmp_path / 'm.vw'} --quiet")
    saved = loaded.get_arguments()
    loaded.finish()
    # a saved model keeps them, so a model store resumes with the same settings
    words = args.split()
    for flag, long in (("-q", "--quadratic"), ("--cubic", "--cubic")):
        for i, w in enumerate(words):
            if w == flag:
                assert f"{long} {words[i + 1]}" in saved
    if "normalized=0" in text:
        assert "--adaptive" in saved and "--normalized" not in saved


def test_defaults_are_unchanged_by_the_optional_keys():
    assert "-q co --hash all" in PolicySpec.parse("epsilon:0.05").vw_args()
    assert "--adaptive" not in PolicySpec.parse("epsilon:0.05").vw_args()


@pytest.mark.parametrize("text,message", [
    ("epsilon,interactions=c", "interactions"), ("epsilon,interactions=co+c1", "interactions"),
    ("epsilon,interactions=", "interactions"), ("epsilon,normalized=2", "normalized"),
    ("epsilon,normalized=0.5", "integer"),
])
def test_rejects_bad_optional_keys(text, message):
    with pytest.raises(ValueError, match=message):
        PolicySpec.parse(text)


@pytest.mark.parametrize("text", [
    "squarecb:gamma=10,lr=0.5,normalized=0,power_t=0",  # the default
    "squarecb:gamma=10,lr=3,normalized=0",  # the default before
    "squarecb:gamma=20,elim=1", "epsilon:0.1,normalized=0,power_t=0.3", "bag:4,epsilon=0.02",
])
def test_personalizer_learning_settings_round_trip(text):
    """The arguments Personalizer's policy route shows for a spec read back as that spec
    (``-b 18``, the default, is left out)."""
    from bandit.config.learning_settings import arguments_of, spec_from_arguments

    spec = PolicySpec.parse(text)
    back = spec_from_arguments(arguments_of(spec))
    assert back.vw_args() == spec.vw_args()
    assert dict(back.params) == dict(spec.params)


@pytest.mark.parametrize("arguments", ["--cb_explore_adf --adaptive", "--invariant --normalized",
                                       "--epsilon 0.1 --adaptive --normalized"])
def test_learning_settings_refuse_a_partial_update_rule(arguments):
    from bandit.config.learning_settings import spec_from_arguments
    from bandit.core.errors import BadRequest

    with pytest.raises(BadRequest):
        spec_from_arguments(arguments)


def test_elim_belongs_to_squarecb():
    assert PolicySpec.parse("squarecb,elim=1").vw_args().endswith("--elim")
    with pytest.raises(ValueError, match="allowed"):
        PolicySpec.parse("epsilon:0.1,elim=1")


def test_squarecb_takes_only_the_cb_type_vw_accepts():
    with pytest.raises(ValueError, match="cb_type=mtr only"):
        PolicySpec.parse("squarecb:10,cb_type=dr")
    assert PolicySpec.parse("squarecb:10,cb_type=mtr").kind == "squarecb"
