"""Explanations with interaction terms, against real VW models: the term weights are the
ones VW itself writes in its readable model (``--invert_hash``), the terms add up to the
model's choice, and a decision that only a context×offer crossing can make is explained
by that crossing."""

from __future__ import annotations

import random

import pytest

from bandit.core.explain import contributions, terms
from bandit.core.policy_spec import PolicySpec
from bandit.core.vw_adapter import VWModel, action_line

USERS = [f"x{i}" for i in range(4)]


def offer(i: int) -> dict[str, dict[str, float]]:
    return {"o": {f"kind=k{i}": 1.0}, "o_id": {f"id=a{i}": 1.0}}


def context(u: str) -> dict[str, dict[str, float]]:
    return {"cu": {f"u={u}": 1.0, "n": 0.5}}


def train(model: VWModel, n: int = 800, seed: int = 0) -> None:
    """Uniformly shown offers; a_i pays exactly when the user is x_i, so every offer
    pays a quarter of the time and only the crossing tells them apart."""
    rng = random.Random(seed)
    lines = [action_line(offer(i)) for i in range(4)]
    for _ in range(n):
        u, a = rng.randrange(4), rng.randrange(4)
        model.learn(context(USERS[u]), lines, a, 1.0 if a == u else 0.0, 0.25)


@pytest.mark.parametrize("spec", ["epsilon:0.05", "bag:3", "squarecb", "softmax"])
def test_term_weights_are_the_weights_vw_writes(tmp_path, spec):
    args = PolicySpec.parse(spec).vw_args(0)
    readable = tmp_path / "readable.txt"
    with_names = VWModel(f"{args} --invert_hash {readable}")
    train(with_names, 200)
    with_names.close()  # writes the readable model
    model = VWModel(args)
    train(model, 200)
    want: dict[tuple[tuple[str, str], ...], list[float]] = {}
    for line in readable.read_text().splitlines():
        if "^" not in line:
            continue
        name, _, weight = line.rsplit(":", 2)
        term = tuple(tuple(p.split("^", 1)) for p in name.split("[")[0].split("*"))
        want.setdefault(term, []).append(float(weight.split()[0]))  # type: ignore[arg-type]
    try:
        assert any(len(t) == 2 for t in want) and len(want) > 30
        got = model.term_weights(list(want))
        for (term, ws), g in zip(want.items(), got, strict=True):
            assert g == pytest.approx(sum(ws) / len(ws), abs=2e-6), term  # 6 digits written
    finally:
        model.close()


def test_a_decision_made_by_a_crossing_is_explained_by_it():
    model = VWModel(PolicySpec.parse("epsilon:0.05").vw_args(0))
    train(model)
    lines = [action_line(offer(i)) for i in range(4)]
    pairs = model.interactions()
    assert pairs == [("c", "o")]
    try:
        for i, u in enumerate(USERS):
            pmf = model.predict(context(u), lines)
            assert pmf.index(max(pmf)) == i  # the model learned the crossing
            # the offer-dependent terms rank the offers as the model does
            scores = []
            for j in range(4):
                found = terms(context(u), offer(j), pairs)
                ws = model.term_weights([t for t, _ in found])
                scores.append(sum(-w * v for (_, v), w in zip(found, ws, strict=True)))
            assert scores.index(max(scores)) == i
            top = contributions(model, context(u), offer(i))
            assert top[0]["interaction"] is True and top[0]["contribution"] > 0
            assert top[0]["namespace"] == "cu*o" or top[0]["namespace"] == "cu*o_id"
            assert top[0]["feature"].startswith(f"u={u}*")
            # the first-order offer terms are far smaller: every offer pays equally often
            first = [c for c in contributions(model, context(u), offer(i), 20)
                     if not c["interaction"]]
            assert all(abs(c["contribution"]) < top[0]["contribution"] / 3 for c in first)
    finally:
        model.close()


def test_self_and_cubic_interactions_are_enumerated_as_vw_does(tmp_path):
    """With ``-q co -q oo --cubic cco`` the terms of an offer are exactly the readable
    model's names made of that offer's and the context's features (each unordered
    combination within a namespace group once), with VW's weights."""
    spec = PolicySpec.parse("epsilon:0.05,interactions=co+oo+cco")
    readable = tmp_path / "readable.txt"
    with_names = VWModel(f"{spec.vw_args(0)} --invert_hash {readable}")

    def ctx(u: str) -> dict[str, dict[str, float]]:
        return {"cu": {f"u={u}": 1.0, "n": 0.5}, "cv": {"v=1": 1.0}}

    def off(i: int) -> dict[str, dict[str, float]]:
        return {"o": {f"kind=k{i}": 1.0, "z": 2.0}, "o_id": {f"id=a{i}": 1.0}}

    def teach(model: VWModel) -> None:
        rng = random.Random(1)
        lines = [action_line(off(i)) for i in range(4)]
        for _ in range(200):
            u, a = rng.randrange(4), rng.randrange(4)
            model.learn(ctx(USERS[u]), lines, a, 1.0 if a == u else 0.0, 0.25)

    teach(with_names)
    with_names.close()
    model = VWModel(spec.vw_args(0))
    teach(model)
    written: dict[tuple[tuple[str, str], ...], float] = {}
    for line in readable.read_text().splitlines():
        if "^" in line:
            name, _, weight = line.rsplit(":", 2)
            written[tuple(tuple(p.split("^", 1)) for p in name.split("*"))] = \
                float(weight.split()[0])  # type: ignore[misc]
    try:
        assert sorted(model.interactions()) == [("c", "c", "o"), ("c", "o"), ("o", "o")]
        found = terms(ctx("x1"), off(1), model.interactions())
        mine = {t for t, _ in found}
        names = {(ns, f) for part in (ctx("x1"), off(1)) for ns, fs in part.items() for f in fs}
        offered = {(ns, f) for ns, fs in off(1).items() for f in fs}
        expected = {t for t in written if set(t) <= names and set(t) & offered}
        assert mine == expected and len(mine) > 20
        assert any(len(t) == 3 for t in mine) and any(t[0][0].startswith("o") and len(t) == 2
                                                      for t in mine)
        for t, w in zip(mine, model.term_weights(list(mine)), strict=True):
            assert w == pytest.approx(written[t], abs=2e-6), t
        values = dict(found)
        assert values[(("cu", "n"), ("o", "z"))] == 1.0  # 0.5 × 2
    finally:
        model.close()
