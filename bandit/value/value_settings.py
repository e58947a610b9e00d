"""The value-aware settings' grammars: ``BANDIT_HEADS``, ``BANDIT_OBJECTIVE`` and the
constraints at inference (``BANDIT_MIN_MARGIN``, ``BANDIT_SHARE_CAP``,
``BANDIT_DAILY_BUDGETS``). Each parser raises ``ValueError`` with what is wrong;
:class:`bandit.config.settings.Settings` prefixes the variable's name.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bandit.value.constraints import BudgetPacer, Constraint, ConstraintSet, MinMargin, ShareCap
from bandit.value.objective import Objective
from bandit.value.spend_ledger import SpendStore, SqliteSpends

log = logging.getLogger("bandit.budgets")

_KIND = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SHARE = re.compile(r"^\s*(advertiser|category)\s*:\s*([0-9.eE+-]+)\s*/\s*(\d+)\s*$")


def parse_heads(text: str) -> tuple[str, ...]:
    """``click,conversion,value`` → the reward kinds learned as heads (names an objective
    can use: letters, digits and ``_``)."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds:
        raise ValueError("name at least one reward kind, e.g. click,conversion,value")
    for k in kinds:
        if not _KIND.match(k):
            raise ValueError(f"head {k!r} must be a name of letters, digits and _ "
                             "(at most 64)")
    if len(set(kinds)) != len(kinds):
        raise ValueError("a head is named twice")
    return tuple(kinds)


def parse_objective(text: str, heads: Sequence[str]) -> Objective:
    """An objective over ``heads`` (other names are numeric offer fields) that uses at
    least one head."""
    obj = Objective.parse(text, heads)
    if not obj.heads:
        raise ValueError(f"objective {text!r} uses no head; heads: {', '.join(heads)}")
    return obj


def _number(text: str, what: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"{what} {text.strip()!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{what} must be finite")
    return x


@dataclass(frozen=True)
class ConstraintSpec:
    """The constraints' settings, parsed: each builds a fresh constraint per worker (the
    budgets' spend in a ledger file when one is given, shared by whoever opens it)."""

    min_margin: float | None = None
    share_by: str = "advertiser"
    share: float | None = None
    window: int = 1000
    budgets: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, min_margin: str, share_cap: str, daily_budgets: str) -> ConstraintSpec:
        margin = _number(min_margin, "minimum margin") if min_margin.strip() else None
        by, share, window = "advertiser", None, 1000
        if share_cap.strip():
            m = _SHARE.match(share_cap)
            if m is None:
                raise ValueError(f"expected advertiser:SHARE/WINDOW or category:SHARE/WINDOW "
                                 f"(e.g. advertiser:0.3/1000), got {share_cap!r}")
            by, share, window = m.group(1), _number(m.group(2), "share"), int(m.group(3))
        budgets: list[tuple[str, float]] = []
        for part in (p for p in daily_budgets.split(",") if p.strip()):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"expected ADVERTISER=BUDGET, got {part!r}")
            budgets.append((key.strip(), _number(value, f"budget of {key.strip()!r}")))
        spec = cls(margin, by, share, window, tuple(budgets))
        spec.build()  # every constraint's own checks, once
        return spec

    def _margin(self) -> MinMargin | None:
        return MinMargin(self.min_margin) if self.min_margin is not None else None

    def _share(self) -> ShareCap | None:
        return ShareCap(self.share_by, self.share, self.window) \
            if self.share is not None else None

    def _budget(self, ledger: str | Path | None) -> BudgetPacer | None:
        if not self.budgets:
            return None
        store: SpendStore | None = None
        if ledger is not None:
            try:
                store = SqliteSpends(ledger)
            except (OSError, sqlite3.Error) as exc:  # e.g. a read-only model dir
                log.warning("budget ledger %s cannot be opened (%s): each worker keeps "
                            "its own spend in memory, forgotten at a restart", ledger, exc)
        return BudgetPacer(dict(self.budgets), store=store)

    def build(self, ledger: str | Path | None = None) -> ConstraintSet | None:
        """A fresh set of the configured constraints (None: none configured); the
        budgets' spend in the SQLite file ``ledger`` (None: in memory)."""
        found: list[Constraint] = [c for c in (self._margin(), self._share(),
                                               self._budget(ledger)) if c is not None]
        return ConstraintSet(found) if found else None
