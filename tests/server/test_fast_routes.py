"""The hot routes answer as their Starlette routes do: the same status, body and
(Personalizer) ``x-ms-error-code`` for the same requests, good and bad, through
``FastRoutes`` (the app as served) and through the router alone (the plain twin)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from bandit.config.settings import Settings
from bandit.core.policy import VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.server.app import create_app
from bandit.server.personalizer import BASES, QUERY_BASE
from bandit.streaming.sinks import NullSink
from tests.server.conftest import Client, offers

Q = "?api-version=2022-09-01-preview"


def actions(n: int = 6) -> list[dict[str, Any]]:
    return [{"id": f"a{i}", "features": [{"kind": f"k{i % 3}"}, {"price": i / 2}]}
            for i in range(n)]


def rank(event: str, **extra: Any) -> dict[str, Any]:
    return {"eventId": event, "contextFeatures": [{"tod": "am"}, {"n": 3}],
            "actions": actions(), **extra}


def multislot(event: str) -> dict[str, Any]:
    return {"eventId": event, "contextFeatures": [{"tod": "pm"}], "actions": actions(),
            "slots": [{"id": "top", "baselineAction": "a0"},
                      {"id": "side", "baselineAction": "a1", "excludedActions": ["a2"]}]}


CASES: list[tuple[str, Any]] = [
    ("/v1/decide", {"event_id": "d1", "offers": offers(6), "context": {"u": {"s": "x"}}}),
    ("/v1/decide", {"offers": "not a list"}),
    ("/v1/decide", b"{broken"),
    *[(f"{base}/rank", rank(f"r-{i}")) for i, base in enumerate(BASES)],
    (f"{QUERY_BASE}/rank{Q}", rank("r-q")),
    *[(f"{base}/multislot/rank", multislot(f"m-{i}")) for i, base in enumerate(BASES)],
    (f"{QUERY_BASE}/multislot/rank{Q}", multislot("m-q")),
    (f"{BASES[0]}/rank", rank("r-bad", actions=[])),
    (f"{BASES[1]}/rank", {"eventId": "r-bad2", "actions": "x"}),
    (f"{BASES[0]}/multislot/rank", {**multislot("m-bad"), "slots": []}),
    (f"{QUERY_BASE}/rank", rank("r-noversion")),  # the api-version is required
    (f"{QUERY_BASE}/rank?api-version=2020-01-01", rank("r-oldversion")),
    (f"{QUERY_BASE}/rank", b"{broken"),  # both wrong: the version is named first
    (f"{QUERY_BASE}/rank", rank("r-big", pad="x" * 3000)),  # too large, and no version
    (f"{QUERY_BASE}/rank{Q}", rank("r-big2", pad="x" * 3000)),  # too large: 413
    (f"{BASES[0]}/rank", rank("r-big3", pad="x" * 3000)),
]


@pytest.fixture
def apps(tmp_path):
    s = Settings(model_dir=str(tmp_path / "m"), event_sink="none", max_body_bytes=2048)
    policy = VWPolicy.fresh(PolicySpec.parse("epsilon:0.2"), seed=3)
    app = create_app(s, policy, NullSink(), registry=CollectorRegistry())
    served, routed = Client(app), Client(app.router)  # the router: no FastRoutes before it
    yield served, routed
    served.close()
    routed.close()
    policy.close()


@pytest.mark.parametrize("path, body", CASES, ids=[f"{p}:{i}" for i, (p, _) in
                                                  enumerate(CASES)])
def test_fast_and_routed_answers_agree(apps, path, body):
    served, routed = apps
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"content-type": "application/json"}
    a = served.post(path, content=content, headers=headers)
    b = routed.post(path, content=content, headers=headers)
    assert (a.status_code, a.json()) == (b.status_code, b.json())
    assert a.headers.get("x-ms-error-code") == b.headers.get("x-ms-error-code")
    if path.startswith("/personalizer"):
        assert a.status_code in (201, 400, 413)
        assert (a.status_code >= 400) == ("x-ms-error-code" in a.headers)


def test_the_personalizer_routes_are_served_by_the_fast_path(apps):
    """Each rank route of every generation is a hot route (not left to the router)."""
    served, _ = apps
    assert served.get("/healthz").status_code == 200  # (the stack is built on first use)
    fast = served.app.middleware_stack
    while type(fast).__name__ != "FastRoutes":
        fast = fast.app
    for base in (*BASES, QUERY_BASE):
        assert {f"{base}/rank", f"{base}/multislot/rank"} <= set(fast.routes)
    r = served.post(f"{QUERY_BASE}/rank", json=rank("x"))
    assert r.status_code == 400 and r.headers["x-ms-error-code"] == \
        "MissingApiVersionParameter"
