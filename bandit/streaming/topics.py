"""Topic names and their creation.

Messages are keyed by event id, so a decision and its rewards land on the same
partition when both topics have the same partition count.
"""

from __future__ import annotations

from dataclasses import dataclass

from bandit.config.settings import Settings


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
    from bandit.streaming.kafka_client import create_topics

    return create_topics(bootstrap, list(topics.all()), partitions)
