"""Schemathesis against /openapi.json, every route, bounded example count: no 5xx,
every response matches its documented schema, schema-violating requests are refused
(the app in-process, real VW).

Not checked: that every schema-valid request is accepted. Some rules cannot be written
in JSON Schema (offer ids unique, ``slots`` at most the number of offers left after
exclusions), so a schema-valid request may still get a 400 naming the field.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry
from schemathesis.checks import positive_data_acceptance

from bandit.config.settings import Settings
from bandit.core.policy import VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.server.app import create_app
from bandit.stores.modelstore import ModelStore
from bandit.streaming.sinks import NullSink


def _app():
    import tempfile
    from pathlib import Path

    from tests.server.test_personalizer_eval import write_logs

    root = Path(tempfile.mkdtemp(prefix="bandit-fuzz-"))
    write_logs(root / "joined.jsonl", 40)  # what evaluations run on
    s = Settings(model_dir=str(root / "models"), event_sink="none",
                 evaluation_logs=str(root / "joined.jsonl"))
    # with a model store: the configuration, model, logs and evaluation routes do their
    # real work
    return create_app(s, VWPolicy.fresh(PolicySpec.parse("epsilon:0.1")), NullSink(),
                      registry=CollectorRegistry(), store=ModelStore(s.model_dir))


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)  # the same examples on every run: CI never flakes on luck
def test_api_conforms(case):
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
