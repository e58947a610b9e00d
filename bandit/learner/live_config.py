"""The learner's side of the live configuration (:mod:`bandit.config.loop_config`).

:class:`ConfigFollower` notices a new ``config.json`` in the model store (one ``stat``
per poll) and hands back the configuration to apply: the reward window, default
reward and aggregation of the join, how often models are published, whether to learn
at all (``LoggingOnly``), and a new model generation to adopt (a reset, an import or
new learning settings published by a server).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bandit.config.loop_admin import load_config
from bandit.config.loop_config import LoopConfig
from bandit.config.settings import Settings
from bandit.learner.join import JoinState
from bandit.stores.modelstore import ModelStore


@dataclass
class LogRange:
    """The first and last decision timestamps learned (``GET logs/properties``), and the
    latest reward timestamp read: servers learning rewards at once (``bandit.server.
    instant``) re-apply to a new model only the rewards stamped after it."""

    start: str | None = None
    end: str | None = None
    rewards_to: str | None = None
    # decisions whose rewards were read but not learned yet (the decision had not been
    # read): a server applies their updates again too
    rewards_pending: list[str] = field(default_factory=list)

    def add(self, timestamp: object) -> None:
        if isinstance(timestamp, str):
            if self.start is None or timestamp < self.start:
                self.start = timestamp
            if self.end is None or timestamp > self.end:
                self.end = timestamp

    def reward(self, timestamp: str) -> None:
        if self.rewards_to is None or timestamp > self.rewards_to:
            self.rewards_to = timestamp

    def snapshot(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {} if self.start is None or self.end is None else \
            {"from": self.start, "to": self.end}
        if self.rewards_to is not None:
            out["rewards_to"] = self.rewards_to
        if self.rewards_pending:
            out["rewards_pending"] = self.rewards_pending
        return out or None

    @classmethod
    def restore(cls, obj: object) -> LogRange:
        if isinstance(obj, dict):
            start, end, rewards = obj.get("from"), obj.get("to"), obj.get("rewards_to")
            rewards = rewards if isinstance(rewards, str) else None
            if isinstance(start, str) and isinstance(end, str):
                return cls(start, end, rewards)
            return cls(rewards_to=rewards)
        return cls()


class ConfigFollower:
    def __init__(self, store: ModelStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._stamp = self._read_stamp()
        self.config = load_config(store, settings)

    def _read_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.store.config_path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def poll(self) -> LoopConfig | None:
        """The configuration if its file changed since the last poll, else None."""
        stamp = self._read_stamp()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        self.config = load_config(self.store, self.settings)
        return self.config


def apply_to_join(state: JoinState, config: LoopConfig) -> None:
    """The join's reward settings from ``config``: decisions made since its last edit
    wait the new window, those made before keep the one in force then."""
    state.set_window(config.reward_wait, config.edited_at)
    state.default_reward = config.default_reward
    state.reward_function = config.reward_aggregation
