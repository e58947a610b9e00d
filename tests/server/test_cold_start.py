"""Cold-start priors inside decisions (the embeddings extra; real WordLlama, real VW
heads): a new catalogue offer borrows its nearest known offers' predictions."""

from __future__ import annotations

import asyncio

import pytest

from bandit.core.offerstats import OfferStats
from bandit.core.types import DecideRequest
from bandit.stores.modelstore import ModelStore
from tests.server.test_value_decide import value_app
from tests.value import trained

pytest.importorskip("wordllama")

ENTRIES = {
    "rome": {"title": "Weekend in Rome", "description": "Hotel and flights to Rome, Italy",
             "payout": 10.0},
    "ski": {"title": "Ski pass", "description": "A week of skiing in the Alps",
            "payout": 1.0},
    "dental": {"title": "Dental insurance", "description": "Cover for your teeth",
               "payout": 2.0},
}
# no word in common with rome's text (so the heads' bag of words cannot tell), the
# same meaning (cosine similarity 0.46 to rome, 0.07 to the others)
NEW = {"title": "Colosseum and Vatican tour", "description": "Three days in the Italian "
       "capital", "payout": 10.0}
# rome converts and pays; the others rarely do
WORLD = {"rome": (0.5, 0.6, 10.0), "ski": (0.5, 0.05, 1.0), "dental": (0.3, 0.05, 2.0)}


def publish_known(root, svc) -> None:
    """Heads trained on the known entries' catalogue offers, with their impressions."""
    view = svc.value_aware.offers
    assert view is not None
    offers = tuple(view.offer(view.entries[oid]) for oid in ENTRIES)
    req = DecideRequest("x", {}, offers)
    stats = OfferStats()
    for oid in ENTRIES:
        for _ in range(200):
            stats.add(oid, 0.0, 1 / 3)
    trained.publish(ModelStore(root / "models"),
                    trained.train(3000, 5, req, WORLD), stats.snapshot())


@pytest.mark.parametrize("cold_start", ["auto", "off"])
def test_a_new_offer_borrows_its_neighbours_value(tmp_path, cold_start):
    with value_app(tmp_path, cold_start=cold_start) as (c, svc):
        c.request("PUT", "/v1/admin/objective", json={"objective": "value"})
        for oid, body in {**ENTRIES, "rome-new": NEW}.items():
            assert c.request("PUT", f"/v1/offers/{oid}", json=body).status_code == 201
        svc.value_aware.offers.refresh(force=True)
        publish_known(tmp_path, svc)
        assert asyncio.run(svc.value_aware.ranking.refresh_heads()) is True
        r = c.post("/v1/decide", json={"offers": ["ski", "dental", "rome-new", "rome"],
                                       "predict": True, "explore": False})
        assert r.status_code == 200, r.text
        value = {k: v["value"] for k, v in r.json()["predictions"].items()}
        assert value["rome"] > 5 * max(value["ski"], value["dental"])  # learned
        if cold_start == "off":  # the heads alone know nothing of the new offer's id
            assert value["rome-new"] < 0.5 * value["rome"]
            assert svc.value_aware.ranking.cold_start is None
            return
        # borrowed from rome (nearest in meaning), with no impression of its own
        assert value["rome-new"] > 0.7 * value["rome"]
        assert r.json()["slots"][0]["id"] in ("rome", "rome-new")
        assert svc.value_aware.ranking.state()["cold_start"]["offers_given_a_prior"] > 0
