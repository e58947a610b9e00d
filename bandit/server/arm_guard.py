"""The arm guard: an experiment's ``model`` arm serves its baseline arm's policy once
it is clearly losing to it."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from bandit.config.settings import Settings
from bandit.server.livestats import Counts
from bandit.server.shared_live import SharedLive

log = logging.getLogger("bandit.server")
CHECK_EVERY = 10.0  # seconds between two comparisons
WINDOW = 600.0  # seconds of live counts compared


class ArmGuard:
    """Switches the ``model`` arm to its baseline once its reward over the last 10
    minutes is below the baseline's by more than the margin, with 95% one-sided
    confidence (checked every 10 s; it stays switched until :meth:`reset`, ``POST
    /v1/admin/arm-guard/reset``). Both arms are measured on their own traffic, so the
    comparison is on-policy and unbiased. With workers sharing their counts, the
    switch is shared too (``shared``)."""

    def __init__(self, settings: Settings, window: Callable[[float], dict[str, Counts]],
                 shared: SharedLive | None = None) -> None:
        self.margin = settings.arm_guard_margin
        self.baseline = settings.arm_guard_baseline
        self.minimum = settings.arm_guard_min
        self._window = window
        self._shared = shared
        self.tripped = False
        self.checked = 0.0  # monotonic time of the last comparison

    def switched(self) -> bool:
        """Whether the model arm serves its baseline now (compares when it is time)."""
        if self.margin <= 0 or self.tripped:
            return self.tripped
        now = time.monotonic()
        if now - self.checked < CHECK_EVERY:
            return False
        self.checked = now
        w = self._window(WINDOW)
        m, b = w.get("model"), w.get(self.baseline)
        if m is None or b is None or min(m.decisions, b.decisions) < self.minimum:
            return False
        vm, vb = m.reward_sum / m.decisions, b.reward_sum / b.decisions
        se = math.sqrt(max(vm * (1 - vm), 1e-9) / m.decisions +
                       max(vb * (1 - vb), 1e-9) / b.decisions)
        if vm - vb + self.margin < -1.645 * se:
            self.tripped = True
            if self._shared is not None:  # every worker switches
                self._shared.set_flag("arm_guard", True)
            log.warning("arm guard: the model arm (%.4f) is below %s (%.4f) by more than "
                        "%.4f; serving %s to it", vm, self.baseline, vb, self.margin,
                        self.baseline)
        return self.tripped

    def reset(self) -> None:
        self.tripped = False
        if self._shared is not None:
            self._shared.set_flag("arm_guard", False)

    def pick_up(self) -> None:
        """Take the switch another worker may have flipped."""
        assert self._shared is not None
        self.tripped = self._shared.flag("arm_guard")
