"""Per-minute sums of an evaluated policy's importance-weighted rewards, and their
aggregation into Personalizer's summaries (any interval, sliding or expanding).

An evaluation keeps, per minute of the logs, ``[minute start, rows, Σ w·r, Σ w,
Σ (w·r)², rows with π > 0]`` for each policy, so every aggregation a GET asks for is
rebuilt exactly from them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MINUTE = 60.0


@dataclass(frozen=True)
class Sums:
    start: float
    n: float = 0.0
    wr: float = 0.0
    w: float = 0.0
    wr2: float = 0.0
    nonzero: float = 0.0

    def add(self, b: Sequence[float]) -> Sums:
        return Sums(self.start, self.n + b[1], self.wr + b[2], self.w + b[3],
                    self.wr2 + b[4], self.nonzero + b[5])

    @property
    def ips(self) -> float:
        return self.wr / self.n if self.n else 0.0

    @property
    def half_width(self) -> float:
        """The 95% Gaussian half-width of the IPS mean."""
        if self.n < 2:
            return 0.0
        var = max(self.wr2 / self.n - self.ips ** 2, 0.0) * self.n / (self.n - 1)
        return 1.959963984540054 * math.sqrt(var / self.n)


def aggregate(bins: Sequence[Sequence[float]], start: float, end: float, minutes: int,
              expanding: bool) -> tuple[Sums, list[Sums]]:
    """The total over ``[start, end)`` and one entry per ``minutes``-long interval
    (cumulative from ``start`` when ``expanding``), intervals without rows left out."""
    step = minutes * MINUTE
    total = Sums(start)
    per: dict[int, Sums] = {}
    for b in sorted(bins, key=lambda x: x[0]):
        if not start <= b[0] < end:
            continue
        total = total.add(b)
        k = int((b[0] - start) // step)
        per[k] = per.get(k, Sums(start + k * step)).add(b)
    series = []
    running = Sums(start)
    for k in sorted(per):
        s = per[k]
        if expanding:
            running = Sums(s.start, running.n + s.n, running.wr + s.wr, running.w + s.w,
                           running.wr2 + s.wr2, running.nonzero + s.nonzero)
            series.append(running)
        else:
            series.append(s)
    return total, series
