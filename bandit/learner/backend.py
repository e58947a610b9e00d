"""What the learner learns with: VW in this process, or VW in a child process.

The daemon sees one :class:`LearnerBackend` and never asks which it has. A backend
learns CB DSJSON lines in order and saves the model after exactly the lines it was
given; one that ``emits`` also writes each joined event it has learned to Kafka
itself (VW in a child: it learns on its own core and produces the events it learned,
so the daemon never waits for VW). :class:`BackendDied` means the backend can learn
no more (the child is gone): the daemon stops, and a restart resumes exactly once.
Any other exception from ``learn`` is VW refusing that one example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from bandit.core.scaling import Standardizer
from bandit.core.vw_adapter import VWModel
from bandit.learner.vw_process import VWProcess, VWProcessError

BackendDied = VWProcessError
Emit = tuple[str, str, str]  # (bootstrap, joined topic, compression)


class LearnerBackend(Protocol):
    emits: bool    # writes the joined events it learns to the joined topic itself
    errors: int    # lines VW refused, as of the last save
    refused: int   # joined events Kafka refused it for good, as of the last save
    @property
    def saved_scale(self) -> dict[str, Any] | None:
        """The numeric-feature statistics the last saved model is served with (None:
        not standardising)."""

    def standardize(self, state: dict[str, Any]) -> None: ...

    def learn_dsjson(self, line: bytes) -> None: ...

    def learn_and_emit(self, key: bytes, line: bytes, body: bytes | None = None) -> None: ...

    def learn_group_and_emit(self, key: bytes, lines: list[bytes], out: bytes) -> None: ...

    def pump(self) -> None: ...

    def save_begin(self, path: str | Path) -> None: ...

    def save_done(self, wait: bool = False) -> bool: ...

    def close(self) -> None: ...


class InProcessVW:
    """VW in the daemon's own process: learns at once, saves at once, never emits."""

    emits = False
    errors = 0
    refused = 0

    def __init__(self, model: VWModel) -> None:
        self.model = model

    @property
    def saved_scale(self) -> dict[str, Any] | None:
        return self.model.saved_scale

    def standardize(self, state: dict[str, Any]) -> None:
        self.model.standardize(Standardizer.restore(state))

    def learn_dsjson(self, line: bytes) -> None:
        self.model.learn_dsjson(line)

    def learn_and_emit(self, key: bytes, line: bytes, body: bytes | None = None) -> None:
        raise BackendDied("VW in-process does not write joined events")

    def learn_group_and_emit(self, key: bytes, lines: list[bytes], out: bytes) -> None:
        raise BackendDied("VW in-process does not write joined events")

    def pump(self) -> None:
        """Nothing queued: every line was learned when it was given."""

    def save_begin(self, path: str | Path) -> None:
        self.model.save(path)

    def save_done(self, wait: bool = False) -> bool:
        return True

    def close(self) -> None:
        self.model.close()


def fresh(args: str, *, child: bool, emit: Emit | None) -> LearnerBackend:
    """A new model with VW arguments ``args``."""
    return VWProcess(args, emit=emit) if child else InProcessVW(VWModel(args))


def load(path: str | Path, *, child: bool, emit: Emit | None) -> LearnerBackend:
    """A verified model file to learn on from; raises :class:`BackendDied` if VW cannot
    read it."""
    return VWProcess.load(path, emit=emit) if child else InProcessVW(VWModel.load(path))
