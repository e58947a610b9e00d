"""Every bad request gets a 4xx naming the field, and the next good one still works."""

import orjson
import pytest

from tests.server.conftest import offers

GOOD = {"context": {"user": {"country": "US"}}, "offers": offers(5)}


def body(**changes):
    b = {**GOOD, **changes}
    return {k: v for k, v in b.items() if v is not ...}


CASES = [
    # (name, path, raw body, status, code, message fragment)
    ("invalid json", "/v1/decide", b"{not json", 400, "InvalidJson", "not valid JSON"),
    ("not an object", "/v1/decide", b"[1,2]", 400, "BadRequest", "JSON object"),
    ("offers missing", "/v1/decide", body(offers=...), 400, "BadRequest", "offers"),
    ("offers empty", "/v1/decide", body(offers=[]), 400, "BadRequest", "offers"),
    ("offers wrong type", "/v1/decide", body(offers="o1"), 400, "BadRequest", "offers"),
    ("offer not object", "/v1/decide", body(offers=[1]), 400, "BadRequest", "offers[0]"),
    ("offer id missing", "/v1/decide", body(offers=[{"features": {}}]), 400, "BadRequest",
     "offers[0].id"),
    ("offer id number", "/v1/decide", body(offers=[{"id": 5}]), 400, "BadRequest",
     "offers[0].id"),
    ("too many offers", "/v1/decide", body(offers=offers(51)), 400, "BadRequest",
     "at most 50"),
    ("duplicate ids", "/v1/decide", body(offers=[{"id": "a"}, {"id": "a"}]), 400,
     "BadRequest", "duplicate offer id"),
    ("exclude all", "/v1/decide", body(exclude=[f"o{i}" for i in range(5)]), 400,
     "BadRequest", "every offer is excluded"),
    ("exclude wrong type", "/v1/decide", body(exclude="o1"), 400, "BadRequest", "exclude"),
    ("slots zero", "/v1/decide", body(slots=0), 400, "BadRequest", "slots"),
    ("slots above offers", "/v1/decide", body(offers=offers(2), slots=3), 400, "BadRequest",
     "slots"),
    ("slots not int", "/v1/decide", body(slots="2"), 400, "BadRequest", "slots"),
    ("slots bool", "/v1/decide", body(slots=True), 400, "BadRequest", "slots"),
    ("explore not bool", "/v1/decide", body(explore="yes"), 400, "BadRequest", "explore"),
    ("NaN literal", "/v1/decide", b'{"offers": [{"id": "a"}], "context": {"x": NaN}}', 400,
     "InvalidJson", "not valid JSON"),
    ("Infinity literal", "/v1/decide", b'{"offers": [{"id": "a", "features": {"x": Infinity}}]}',
     400, "InvalidJson", "not valid JSON"),
    ("huge number", "/v1/decide", b'{"offers": [{"id": "a", "features": {"x": 1e999}}]}',
     400, "InvalidJson", "not valid JSON"),
    ("beyond float32", "/v1/decide", body(context={"x": 1e300}), 400, "BadRequest",
     "context.x"),
    ("feature wrong type", "/v1/decide", body(context={"u": {"x": [1, "a"]}}), 400,
     "BadRequest", "context.u.x"),
    ("context not object", "/v1/decide", body(context=[1]), 400, "BadRequest", "context"),
    ("offer id too long", "/v1/decide", body(offers=[{"id": "x" * 257}]), 400, "BadRequest",
     "offers[0].id"),
    ("event id too long", "/v1/decide", body(event_id="é" * 129), 400, "BadRequest",
     "event_id"),
    ("user id not string", "/v1/decide", body(user_id=7), 400, "BadRequest", "user_id"),
    ("reward invalid json", "/v1/rewards", b"{", 400, "InvalidJson", "not valid JSON"),
    ("reward missing value", "/v1/rewards", {"event_id": "e"}, 400, "BadRequest", "reward"),
    ("reward string", "/v1/rewards", {"event_id": "e", "reward": "1"}, 400, "BadRequest",
     "reward"),
    ("reward out of range", "/v1/rewards", {"event_id": "e", "reward": 5}, 400, "BadRequest",
     "reward"),
    ("reward huge", "/v1/rewards", b'{"event_id": "e", "reward": 1e999}', 400, "InvalidJson",
     "not valid JSON"),
    ("reward no event", "/v1/rewards", {"reward": 1}, 400, "BadRequest", "event_id"),
    ("reward event too long", "/v1/rewards", {"event_id": "e" * 300, "reward": 1}, 400,
     "BadRequest", "event_id"),
    ("reward slot zero", "/v1/rewards", {"event_id": "e", "reward": 1, "slot": 0}, 400,
     "BadRequest", "slot"),
    ("personalizer actions missing", "/personalizer/v1.0/rank", {"contextFeatures": []}, 400,
     "BadRequest", "actions"),
    ("personalizer features not list", "/personalizer/v1.0/rank",
     {"contextFeatures": {"a": 1}, "actions": [{"id": "a"}]}, 400, "BadRequest",
     "contextFeatures"),
    ("personalizer all excluded", "/personalizer/v1.0/rank",
     {"actions": [{"id": "a"}], "excludedActions": ["a"]}, 400, "BadRequest", "excluded"),
    ("personalizer reward string", "/personalizer/v1.0/events/e1/reward", {"value": "x"}, 400,
     "BadRequest", "value"),
    ("personalizer event id too long", "/personalizer/v1.0/events/" + "e" * 300 + "/reward",
     {"value": 1}, 400, "BadRequest", "eventId"),
]


@pytest.mark.parametrize("name,path,payload,status,code,fragment", CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(client, name, path, payload, status, code, fragment):
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert fragment in err["message"] or fragment in err.get("field", ""), err
    # the service keeps working after every refusal
    ok = client.post("/v1/decide", json=GOOD)
    assert ok.status_code == 200 and len(ok.json()["ranking"]) == 5


def test_body_over_the_limit_is_413(client):
    big = orjson.dumps({**GOOD, "pad": "x" * (1 << 20)})
    r = client.post("/v1/decide", content=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "PayloadTooLarge"
    assert client.post("/v1/decide", json=GOOD).status_code == 200


def test_unknown_event_id_on_reward_is_accepted(client):
    r = client.post("/v1/rewards", json={"event_id": "never-issued", "reward": 1})
    assert r.status_code == 202  # the learner decides what to do with it (documented)


def test_errors_are_counted_by_code(client):
    client.post("/v1/decide", content=b"{")
    client.post("/v1/decide", json={"offers": []})
    text = client.get("/metrics").text
    assert 'bandit_errors_total{code="InvalidJson"} 1.0' in text
    assert 'bandit_errors_total{code="BadRequest"} 1.0' in text


def test_unknown_route_and_method(client):
    r = client.get("/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"
    r = client.get("/v1/decide")
    assert r.status_code == 405 and r.json()["error"]["code"] == "MethodNotAllowed"
