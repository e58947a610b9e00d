"""The live counts the status page and the arm guard read: this worker's, or the
host's when its workers share them."""

from __future__ import annotations

import asyncio
import logging

from bandit.server.arm_guard import ArmGuard
from bandit.server.livestats import Counts, LiveStats
from bandit.server.shared_live import SharedLive

log = logging.getLogger("bandit.server")


class LiveCounts:
    def __init__(self, live: LiveStats, shared: SharedLive | None) -> None:
        self.live = live
        self.shared = shared
        live.shared = shared is not None

    def window(self, seconds: float) -> dict[str, Counts]:
        return (self.shared or self.live).window(seconds)

    def timeline(self) -> list[tuple[float, dict[str, Counts]]]:
        return (self.shared or self.live).timeline()

    def share(self, guard: ArmGuard) -> None:
        """Publish this worker's counts and pick up the arm guard's switch."""
        assert self.shared is not None
        self.shared.flush(self.live)
        guard.pick_up()

    async def share_forever(self, guard: ArmGuard, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.share, guard)
            except Exception:  # the status page goes stale; serving goes on
                log.exception("sharing live counts failed")
