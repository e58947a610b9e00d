"""Hands the service's events to the event sink; a refusal is a 503 the client can
retry (the event was not recorded, so neither is the decision or reward)."""

from __future__ import annotations

import logging
from typing import Any

from bandit.core.errors import Unavailable
from bandit.core.events import encode_decision_event
from bandit.core.types import DecideRequest, Decision
from bandit.server.metrics import Metrics
from bandit.streaming.sinks import EventSink, NullSink

log = logging.getLogger("bandit.server")


class SinkUnavailable(Unavailable):
    def __init__(self, what: str) -> None:
        super().__init__(f"the {what} could not be recorded; retry later")


class Emitter:
    def __init__(self, sink: EventSink, metrics: Metrics) -> None:
        self.sink = sink
        self.metrics = metrics
        self.encodes = not isinstance(sink, NullSink)  # no sink: no event to encode

    def decision(self, request: DecideRequest, decision: Decision, **extra: Any) -> None:
        """The decision's DSJSON event, with ``extra`` fields (arm, agreement, shadow)."""
        if not self.encodes:
            return
        key = request.event_id
        value, c_at = encode_decision_event(request, decision, **extra)
        try:
            self.sink.decision_encoded(key, value, c_at)
        except Exception:
            log.exception("event sink refused the decision")
            self.metrics.sink_errors.inc()
            raise SinkUnavailable("decision") from None

    def reward(self, what: str, key: str, event: dict[str, Any]) -> None:
        """A reward or activation, to the sink's reward stream."""
        try:
            self.sink.reward(key, event)
        except Exception:
            log.exception("event sink refused the %s", what)
            self.metrics.sink_errors.inc()
            raise SinkUnavailable(what) from None
