"""Topic names and their creation.

Messages are keyed by event id, so a decision and its rewards land on the same
partition when both topics have the same partition count.
"""

from __future__ import annotations

from dataclasses import dataclass

from bandit.settings import Settings


@dataclass(frozen=True)
class Topics:
    decisions: str
    rewards: str
    joined: str
    deadletter: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        return cls(settings.topic("decisions"), settings.topic("rewards"),
                   settings.topic("joined"), settings.topic("deadletter"))

    def all(self) -> tuple[str, ...]:
        return (self.decisions, self.rewards, self.joined, self.deadletter)


def ensure_topics(bootstrap: str, topics: Topics, partitions: int) -> list[str]:
    """Create the topics that do not exist yet; return the ones created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics.all() if t not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process
        return missing
    finally:
        admin.close()
