"""Cold-start priors from text embeddings (the embeddings extra, in the dev extra)."""

from __future__ import annotations

import socket
import sys

import pytest

from bandit.core.types import Offer
from bandit.value.catalogue import parse_entry
from bandit.value.embeddings import EXTRA, EmbeddingsUnavailable, OfferEmbeddings, blend

pytest.importorskip("wordllama")

CATALOGUE = [
    parse_entry("flights", {"title": "Cheap flights to Rome",
                            "description": "budget airline deals and discount fares"}),
    parse_entry("broker", {"title": "Stock trading app",
                           "description": "invest in shares and funds with zero fees"}),
    parse_entry("pizza", {"title": "Pizza delivery",
                          "description": "hot food delivered to your door"}),
]


@pytest.fixture(scope="module")
def emb() -> OfferEmbeddings:
    return OfferEmbeddings()


def test_the_model_loads_without_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("the network is not to be used")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    e = OfferEmbeddings()
    vec = e.embedding(CATALOGUE[0])
    assert vec.shape == (256,) and abs(float((vec ** 2).sum()) - 1) < 1e-4


def test_a_new_offer_borrows_from_its_nearest_neighbours(emb):
    new = parse_entry("planes", {"title": "Discount plane tickets",
                                 "description": "low cost flights across Europe"})
    near = emb.nearest(new, CATALOGUE, k=3, min_similarity=-1)
    assert near[0][0] == "flights"
    values = {"flights": 0.30, "broker": 0.01, "pizza": 0.05}
    prior = emb.prior(new, CATALOGUE, values, k=2, min_similarity=-1)
    assert prior is not None and prior > 0.2
    assert emb.prior(new, CATALOGUE, {}, k=2) is None  # no neighbour has a value


def test_embeddings_are_cached_until_the_text_changes(emb):
    a = emb.embedding(CATALOGUE[1])
    assert emb.embedding(CATALOGUE[1]) is a
    changed = parse_entry("broker", {"title": "Pizza delivery"})
    assert emb.embedding(changed) is not a


def test_text_with_no_words_has_no_neighbours(emb):
    assert emb.nearest(parse_entry("empty", {}), CATALOGUE) == []


def test_blend():
    assert blend(None, 0.1, 0) == 0.1
    assert blend(0.3, 0.1, 0, strength=50) == pytest.approx(0.3)
    assert blend(0.3, 0.1, 50, strength=50) == pytest.approx(0.2)


def test_a_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "wordllama", None)
    with pytest.raises(EmbeddingsUnavailable, match=r"offer-bandit\[embeddings\]"):
        OfferEmbeddings().embedding(CATALOGUE[0])
    assert EXTRA == "offer-bandit[embeddings]"


def test_the_extra_is_declared_and_in_the_dev_extra():
    import configparser
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    extras = cfg["options.extras_require"]
    assert "wordllama" in extras["embeddings"]
    assert "wordllama" in extras["dev"]


def test_typical_predictions_are_cached_per_heads_object_not_per_id():
    """A swapped-in heads object never gets the cached values of the one before, even
    if it were to reuse a freed object's id."""
    from bandit.value.catalogue import CatalogueEntry
    from bandit.value.cold_start import ColdStart

    class FakeHeads:
        def __init__(self, value: float) -> None:
            self.value = value

        def predict(self, context, lines):
            return {"click": [self.value] * len(lines)}

    entry = CatalogueEntry("a", title="A phone")
    cold = ColdStart(None, lambda: {"a": entry},  # type: ignore[arg-type]
                     lambda e: Offer(e.id, {}, "|o x"), lambda: 1)
    old = FakeHeads(0.1)
    assert cold.typical(old, entry) == {"click": 0.1}
    old_id = id(old)
    del old  # freed, unless the cache holds it: CPython then tends to reuse its id
    for _ in range(1000):
        new = FakeHeads(0.7)
        if id(new) == old_id:
            break
    assert cold.typical(new, entry) == {"click": 0.7}
    assert cold.typical(new, entry) == {"click": 0.7}
