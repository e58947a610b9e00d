"""In-process HTTP client for the Starlette app (real ASGI, real VW, file sink)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from bandit.config.apikeys import hash_key
from bandit.config.settings import Settings
from bandit.core.policy import VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.server.app import create_app
from bandit.streaming.sinks import FileSink


class Client:
    """A synchronous façade over ``httpx.AsyncClient`` + ``ASGITransport``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://testserver")

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self._client.request(method, url, **kw))

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def close(self) -> None:
        self.loop.run_until_complete(self._client.aclose())
        self.loop.close()


@contextlib.contextmanager
def store_app(tmp_path: Any, **settings: Any) -> Iterator[tuple[Settings, Any, Client]]:
    """A real app over a model store in ``tmp_path`` (file sink, fresh ``epsilon:0.1``
    model): yields its settings, store and client, and closes them all."""
    from bandit.stores.modelstore import ModelStore

    s = Settings(event_dir=str(tmp_path / "events"), model_dir=str(tmp_path / "models"),
                 policy="epsilon:0.1", **settings)
    store = ModelStore(s.model_dir)
    policy = VWPolicy.fresh(PolicySpec.parse(s.policy), seed=1)
    sink = FileSink(s.event_dir)
    c = Client(create_app(s, policy, sink, registry=CollectorRegistry(), store=store))
    try:
        yield s, store, c
    finally:
        c.close()
        sink.close()
        policy.close()


def offers(n: int = 5) -> list[dict[str, Any]]:
    return [{"id": f"o{i}", "features": {"cat": {"c": str(i % 3)}, "price": float(i)}}
            for i in range(n)]


@pytest.fixture
def app_parts(tmp_path):
    settings = Settings(event_dir=str(tmp_path / "events"), model_dir=str(tmp_path / "models"))
    policy = VWPolicy.fresh(PolicySpec.parse("epsilon:0.1"), seed=1)
    sink = FileSink(settings.event_dir)
    return settings, policy, sink


@pytest.fixture
def client(app_parts) -> Iterator[Client]:
    settings, policy, sink = app_parts
    app = create_app(settings, policy, sink, registry=CollectorRegistry())
    c = Client(app)
    yield c
    c.close()
    sink.close()
    policy.close()


# a real bandit-serve process for the published Personalizer clients (Python and JS):
# an admin key and a decide+reward key, file sink, fast model polls
ADMIN, USER = "admin-key-123", "user-key-456"


@pytest.fixture
def server(start_server, tmp_path):
    keys = f"{hash_key(ADMIN)}:decide+reward+admin,{hash_key(USER)}:decide+reward"
    srv = start_server({"BANDIT_MODEL_DIR": str(tmp_path / "models"),
                        "BANDIT_EVENT_SINK": "file", "BANDIT_EVENT_DIR": str(tmp_path / "ev"),
                        "BANDIT_API_KEYS": keys, "BANDIT_MODEL_POLL": "0.2",
                        "BANDIT_POLICY": "epsilon:0.2"})
    srv.wait_ready()
    return srv


@pytest.fixture
def evaluation_server(start_server, tmp_path):
    """A real server whose offline evaluations read joined logs where a1 wins for u=x
    and a2 for u=y (``test_personalizer_eval.write_logs``): (server, the logged rewards)."""
    from tests.server.test_personalizer_eval import write_logs

    logs = tmp_path / "joined.jsonl"
    rewards = write_logs(logs)
    srv = start_server({"BANDIT_MODEL_DIR": str(tmp_path / "models"),
                        "BANDIT_EVENT_SINK": "file", "BANDIT_EVENT_DIR": str(tmp_path / "ev"),
                        "BANDIT_API_KEYS": f"{hash_key(ADMIN)}:decide+reward+admin",
                        "BANDIT_EVALUATION_LOGS": str(logs), "BANDIT_POLICY": "epsilon:0.2"})
    srv.wait_ready()
    return srv, rewards
