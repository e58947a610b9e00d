"""The offer catalogue's routes and decisions that name offers by id (real app, real
VW, file sink; a real two-worker server for the catalogue shared by workers)."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from bandit.config.apikeys import hash_key
from tests.server.conftest import ADMIN, USER, store_app

ENTRY = {"features": {"kind": {"type": "travel"}, "payout": 12.5}, "title": "Rome weekend",
         "description": "Two nights in Rome", "payout": 12.5, "cost": 2.0, "price": 0.1,
         "advertiser": "acme", "category": "travel"}


@pytest.fixture
def app(tmp_path):
    with store_app(tmp_path) as (s, store, c):
        yield s, c


def put(c, oid: str, body) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return c.request("PUT", f"/v1/offers/{oid}", content=content)


def events(s) -> list[dict]:
    from pathlib import Path

    out = []
    for f in sorted(Path(s.event_dir).glob("decisions*")):
        out += [orjson.loads(line) for line in f.read_bytes().splitlines() if line]
    return out


def test_put_get_list_delete(app):
    s, c = app
    r = put(c, "rome", ENTRY)
    assert r.status_code == 201, r.text
    assert r.json()["payout"] == 12.5 and r.json()["advertiser"] == "acme"
    assert put(c, "rome", {**ENTRY, "payout": 14.0}).status_code == 200  # replaced
    assert c.get("/v1/offers/rome").json()["payout"] == 14.0
    put(c, "paris", {"features": {"x": 1.0}, "end": "2099-01-01T00:00:00Z"})
    listing = c.get("/v1/offers").json()
    assert [o["id"] for o in listing["offers"]] == ["paris", "rome"]
    assert listing["revision"] == 3
    assert listing["offers"][0]["end"] == "2099-01-01T00:00:00Z"
    r = c.request("DELETE", "/v1/offers/rome")
    assert r.status_code == 200 and r.json() == {"id": "rome", "deleted": True}
    assert c.get("/v1/offers/rome").status_code == 404
    r = c.request("DELETE", "/v1/offers/rome")
    assert r.status_code == 404 and r.json()["error"]["field"] == "id"


@pytest.mark.parametrize("body, field", [
    ({"payout": -1}, "payout"),
    ({"payout": "12"}, "payout"),
    ({"cost": float("inf")}, None),  # (not JSON: orjson writes null; accepted as 0)
    ({"colour": "red"}, "colour"),
    ({"features": False}, "features"),
    ({"features": [1]}, "features"),
    ({"id": "other"}, "id"),
    ({"features": {"ns": {"x": [1, "a"]}}}, "features.ns.x"),
    ({"title": "x" * 5000}, "title"),
    ({"advertiser": ""}, "advertiser"),
    ({"start": "2026-01-01T00:00:00"}, "start"),
    ({"start": "yesterday"}, "start"),
    ({"start": 100, "end": 50}, "end"),
    ({"start": True}, "start"),
])
def test_bad_entries_get_a_400_naming_the_field(app, body, field):
    s, c = app
    r = put(c, "o1", body)
    if field is None:
        assert r.status_code == 201
        return
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field, r.json()


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"x"', b""])
def test_a_body_that_is_not_an_object_is_a_400(app, raw):
    s, c = app
    r = put(c, "o1", raw)
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest"


def test_an_id_too_long_is_a_400(app):
    s, c = app
    r = put(c, "x" * 300, ENTRY)
    assert r.status_code == 400 and r.json()["error"]["field"] == "id"


def test_decide_by_catalogue_id(app):
    s, c = app
    put(c, "rome", ENTRY)
    put(c, "oslo", {"features": {"kind": {"type": "ski"}}, "payout": 3.0})
    r = c.post("/v1/decide", json={"offers": ["rome", "oslo", {"id": "inline",
                                                                 "features": {"z": 1.0}}],
                                   "slots": 2})
    assert r.status_code == 200, r.text
    ids = {x["id"] for x in r.json()["ranking"]}
    assert ids == {"rome", "oslo", "inline"}
    assert sum(x["probability"] for x in r.json()["ranking"][:1]) > 0
    ev = next(e for e in events(s) if e["EventId"] == r.json()["event_id"])
    multi = dict(zip(ev["ids"], ev["c"]["_multi"], strict=True))
    # the catalogue's features, with the text as the catalogue namespace
    assert "okind" in multi["rome"] and "ocatalogue" in multi["rome"]
    assert any("Rome" in k or "rome" in k for k in multi["rome"]["ocatalogue"])
    assert "oz" in multi["inline"] or "o" in multi["inline"]


def test_an_unknown_catalogue_id_is_a_400_naming_it(app):
    s, c = app
    put(c, "rome", ENTRY)
    r = c.post("/v1/decide", json={"offers": ["rome", "atlantis"]})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["field"] == "offers" and "atlantis" in err["message"]


def test_an_offer_without_features_is_still_an_inline_offer(app):
    s, c = app
    r = c.post("/v1/decide", json={"offers": [{"id": "a"}, {"id": "b"}]})
    assert r.status_code == 200, r.text


def test_inactive_entries_are_left_out(app):
    s, c = app
    put(c, "old", {"features": {"x": 1.0}, "end": time.time() - 10})
    put(c, "soon", {"features": {"x": 2.0}, "start": time.time() + 3600})
    put(c, "now", {"features": {"x": 3.0}})
    r = c.post("/v1/decide", json={"offers": ["old", "soon", "now"]})
    assert r.status_code == 200 and [x["id"] for x in r.json()["ranking"]] == ["now"]
    r = c.post("/v1/decide", json={"offers": ["old", "soon"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "offers"


def test_a_deleted_entry_is_unknown_at_once(app):
    s, c = app
    put(c, "rome", ENTRY)
    assert c.post("/v1/decide", json={"offers": ["rome"]}).status_code == 200
    c.request("DELETE", "/v1/offers/rome")
    assert c.post("/v1/decide", json={"offers": ["rome"]}).status_code == 400


@pytest.mark.integration
def test_workers_share_the_catalogue(start_server, tmp_path):
    """Two uvicorn workers: an entry put through one is decided on by both, at once;
    the catalogue routes need the admin scope."""
    keys = f"{hash_key(ADMIN)}:decide+reward+admin,{hash_key(USER)}:decide+reward"
    srv = start_server({"BANDIT_MODEL_DIR": str(tmp_path / "models"),
                        "BANDIT_EVENT_SINK": "file", "BANDIT_EVENT_DIR": str(tmp_path / "ev"),
                        "BANDIT_API_KEYS": keys, "BANDIT_POLICY": "epsilon:0.2"}, workers=2)
    srv.wait_ready()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    user = {"Authorization": f"Bearer {USER}"}
    with httpx.Client(base_url=srv.base, timeout=10) as h:
        assert h.put("/v1/offers/rome", json=ENTRY, headers=user).status_code == 403
        for i in range(5):
            assert h.put(f"/v1/offers/o{i}", json={"features": {"x": float(i)}},
                         headers=admin).status_code == 201
            # every request a fresh connection: the kernel spreads them over the workers
            for _ in range(6):
                r = httpx.post(srv.base + "/v1/decide", headers=user,
                               json={"offers": [f"o{j}" for j in range(i + 1)]})
                assert r.status_code == 200, r.text
        assert h.delete("/v1/offers/o0", headers=admin).status_code == 200
        for _ in range(6):
            r = httpx.post(srv.base + "/v1/decide", headers=user, json={"offers": ["o0"]})
            assert r.status_code == 400
        assert len(h.get("/v1/offers", headers=admin).json()["offers"]) == 4


@pytest.mark.parametrize("offers, field", [
    ([""], "offers[0].id"),
    (["a", "a"], "offers[1].id"),
    (["a", 3], "offers[1]"),
    (["x" * 300], "offers[0].id"),
    (["__none__"], "offers[0]"),
])
def test_bad_catalogue_ids_in_a_decision_are_named(app, offers, field):
    s, c = app
    put(c, "a", {"features": {"x": 1.0}})
    r = c.post("/v1/decide", json={"offers": offers})
    assert r.status_code == 400 and r.json()["error"]["field"] == field, r.json()


def test_catalogue_ids_are_excluded_and_slots_fit_what_is_left(app):
    s, c = app
    for oid in ("a", "b", "c"):
        put(c, oid, {"features": {"x": 1.0}})
    put(c, "gone", {"features": {"x": 1.0}, "end": time.time() - 1})
    r = c.post("/v1/decide", json={"offers": ["a", "b", "c", "gone"], "exclude": ["b"],
                                   "slots": 3})
    assert r.status_code == 200, r.text
    assert sorted(x["id"] for x in r.json()["slots"]) == ["a", "c"]


def test_a_damaged_catalogue_file_is_a_503_and_decisions_go_on(app):
    """The catalogue's SQLite file failing (here: overwritten with garbage) makes its
    routes answer 503 naming the catalogue, not 500; decide goes on with what it read."""
    from pathlib import Path

    s, c = app
    assert put(c, "rome", ENTRY).status_code == 201
    path = Path(s.catalogue_path(s.model_dir))
    c.app.state.service.value_aware.offers.close()  # (its next statement reopens the file)
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    path.write_bytes(b"this is not a database file " * 200)
    for r in (put(c, "paris", {"features": {"x": 1.0}}), c.get("/v1/offers"),
              c.get("/v1/offers/rome"), c.request("DELETE", "/v1/offers/rome")):
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "CatalogueUnavailable"
        assert "offer catalogue" in r.json()["error"]["message"]
    r = c.post("/v1/decide", json={"offers": ["rome", {"id": "inline", "features": {}}]})
    assert r.status_code == 200, r.text  # the entry read before the damage still serves
