"""The objective as live configuration: ``objective.json`` in the model store, written
by ``PUT /v1/admin/objective`` (atomically) and read by every worker at its next model
poll (one ``stat`` per poll), so a change reaches all workers within one poll. Without
the file the objective is ``BANDIT_OBJECTIVE``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

from bandit.core.events import utc_now
from bandit.stores.modelstore import atomic_write
from bandit.value.objective import Objective
from bandit.value.value_settings import parse_objective

FILE = "objective.json"


class LiveObjective:
    """The objective file of a model store directory ``directory``."""

    def __init__(self, directory: str | Path, heads: Sequence[str]) -> None:
        self.path = Path(directory) / FILE
        self.heads = tuple(heads)
        self._stamp = self._read_stamp()

    def _read_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino  # (each write is a new file)

    def write(self, objective: Objective) -> None:
        """Make ``objective`` every worker's (from their next poll on)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, orjson.dumps({"objective": objective.text,
                                              "edited_at": utc_now()}))

    def read(self) -> Objective | None:
        """The stored objective (None: no file, or one that no longer parses against
        these heads, e.g. after ``BANDIT_HEADS`` changed)."""
        try:
            obj = orjson.loads(self.path.read_bytes())
            return parse_objective(str(obj["objective"]), self.heads)
        except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def changed(self) -> bool:
        """Whether the file changed since the last call (or since this was made)."""
        stamp = self._read_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True

    def clear(self) -> None:
        """Back to ``BANDIT_OBJECTIVE`` at every worker's next poll."""
        self.path.unlink(missing_ok=True)
