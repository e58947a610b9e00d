import math

import pytest
import vowpalwabbit
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.core.errors import BadRequest
from bandit.core.features import Limits, encode, encode_plain, escape, merge, render

LIM = Limits()


def test_types_map_to_vw_features():
    ns = encode({"user": {"country": "US", "age": 30, "vip": True, "tags": ["a", "b"],
                          "emb": [0.5, -1.0], "geo": {"city": "Paris"}, "none": None},
                 "hour": 7}, "c", "context", LIM)
    assert ns == {"cuser": {"country=US": 1.0, "age": 30.0, "vip=true": 1.0, "tags=a": 1.0,
                            "tags=b": 1.0, "emb#0": 0.5, "emb#1": -1.0,
                            "geo.city=Paris": 1.0},
                  "c": {"hour": 7.0}}


@pytest.mark.parametrize("raw", ["a|b", "a:b", "a b", "a\tb", "a\nb", "a\r\nb", "_x", "100%",
                                 "é ü", "a\u00a0b", "\u2028"])
def test_escape_removes_every_special_character(raw):
    out = escape(raw)
    assert not any(ch in out for ch in "|: \t\n\r") and not out.startswith("_")
    assert not any(ch.isspace() for ch in out)


def test_escape_is_injective_on_specials():
    raws = ["a|b", "a:b", "a b", "a%7Cb", "a%b", "_a", "%5Fa", "", "%_"]
    assert len({escape(r) for r in raws}) == len(raws)


def test_render_and_vw_parse():
    ns = {"cuser": {"country=US": 1.0, "age": 30.0}}
    assert render(ns) == "|cuser country=US age:30"
    ws = vowpalwabbit.Workspace("--cb_explore_adf --quiet")
    ex = ws.parse("shared " + render(ns) + "\n|o_id id=a")
    assert len(ex) == 2
    ws.finish_example(ex)
    ws.finish()


@pytest.mark.parametrize("obj,field", [
    ({"x": float("nan")}, "context.x"),
    ({"n": {"x": math.inf}}, "context.n.x"),
    ({"n": {"x": [1, "a"]}}, "context.n.x"),
    ({"n": {"x": {"y": {"z": {"w": 1}}}}}, "context.n.x.y.z"),
    ({"a" * 300: 1}, "context." + "a" * 300),
    ([1, 2], "context"),
    ({"n": {"x": [1.0, float("inf")]}}, "context.n.x[1]"),
    ({"n": {"x": 1e300}}, "context.n.x"),
])
def test_bad_features_name_the_field(obj, field):
    with pytest.raises(BadRequest) as err:
        encode(obj, "c", "context", LIM)
    assert err.value.field == field


def test_feature_count_limit():
    with pytest.raises(BadRequest, match="more than 3 features"):
        encode({"n": {"a": 1, "b": 2, "c": 3, "d": 4}}, "c", "context", Limits(max_features=3))


def test_merge_later_wins():
    assert merge({"a": {"x": 1.0}}, {"a": {"x": 2.0, "y": 1.0}}) == {"a": {"x": 2.0, "y": 1.0}}


json_leaf = st.one_of(st.none(), st.booleans(), st.text(max_size=20),
                      st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), json_value, max_size=5))
def test_any_json_gives_valid_vw_text_or_clean_error(obj):
    """Property: encoding never crashes and never produces text VW misreads."""
    try:
        ns = encode(obj, "c", "context", LIM)
    except BadRequest as exc:
        assert exc.field.startswith("context")
        return
    text = render(ns)
    assert "\n" not in text and "\r" not in text
    for nsname, feats in ns.items():
        assert nsname.startswith("c") and all(math.isfinite(v) for v in feats.values())
        for name in feats:
            assert not any(ch in name for ch in "|: \t") and not name.startswith("_")
    ws = vowpalwabbit.Workspace("--cb_explore_adf --quiet --hash all")

    def count(line: str) -> int:
        ex = ws.parse(line)
        n = sum(ex[0].num_features_in(i) for i in range(ex[0].num_namespaces()))
        ws.finish_example(ex)
        return n

    try:
        base = count("shared |c")  # VW's own constant feature
        got = count(("shared " + text) if text else "shared |c") - base
    finally:
        ws.finish()
    n_feats = sum(len(f) for f in ns.values())
    # VW drops values that are zero as float32; every other feature is seen exactly once
    assert got == n_feats - sum(1 for f in ns.values() for v in f.values() if v == 0.0)


def test_text_is_a_bag_of_words_and_embeddings_are_dense():
    from bandit.core.features import Limits, encode

    out = encode({"offer": {"title": "Save 5% on flights to Paris, PARIS!",
                            "embedding": [0.5, -0.25], "category": "travel"}}, "o", "f",
                 Limits())["ooffer"]
    assert out["title=paris"] == 2.0 and out["title=save"] == 1.0
    assert not any(k.startswith("title=Save") for k in out)
    assert out["embedding#0"] == 0.5 and out["embedding#1"] == -0.25
    assert out["category=travel"] == 1.0


def _outcome(fn, obj):
    try:
        return render(fn(obj, "c", "context", LIM))
    except BadRequest as exc:
        return ("error", str(exc), exc.field)


names = st.one_of(st.text(max_size=12), st.sampled_from(["title", "item.title", "a.text",
                                                          "description", "x" * 70 + ".title",
                                                          "y" * 70, "age"]))


flat_value = st.one_of(st.text(max_size=20), st.integers(-10**6, 10**6), st.floats(),
                       json_value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(names, st.one_of(flat_value, st.dictionaries(names, flat_value,
                                                                    max_size=6)),
                       max_size=4))
def test_the_fast_path_agrees_with_its_plain_twin(obj):
    """Property: ``encode`` (a fast path for flat string and number features) writes the
    same bytes, or raises the same error, as ``encode_plain`` (one general rule)."""
    assert _outcome(encode, obj) == _outcome(encode_plain, obj)


def test_a_text_field_is_free_text_however_it_is_written():
    flat = encode({"user": {"item.title": "Hello World"}}, "c", "context", LIM)
    nested = encode({"user": {"item": {"title": "Hello World"}}}, "c", "context", LIM)
    long_key = "k" * 70 + ".title"
    long = encode({"user": {long_key: "Hello World"}}, "c", "context", LIM)
    assert flat == nested == {"cuser": {"item.title=hello": 1.0, "item.title=world": 1.0}}
    assert long == {"cuser": {long_key + "=hello": 1.0, long_key + "=world": 1.0}}
