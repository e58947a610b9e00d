"""Online standardisation of numeric features, learned with the model.

A linear learner updated by stochastic gradients (VW's) learns slowly from numeric
features far from zero: a value that is 700 ± 300 moves every prediction with its
offset, so the per-action weights chase it instead of the differences between rows.
Second-order learners (ridge regression, LinUCB) do not care; VW does, measurably (see
``benchmarks/learning_quality.py``). So clients send numeric values as they are, and
the model standardises each numeric feature of contexts and offers alike,
``z = (x − mean) / sd``, with the mean and standard deviation of the values it has
learned from.

The statistics belong to the model: the learner accumulates them (Welford's algorithm)
over the contexts and offers it decodes (a context or offer whose text it kept is not
counted again until the next snapshot clears what it kept), and at each save it
**freezes** a snapshot. A saved model file is served with the snapshot its weights were
learned under (``served``); the learner goes on with the snapshot of everything so far.
Both travel in the model store (an attachment the manifest's ``extra.feature_scale``
names), so a server standardises exactly as the learner did, and a learner resuming
from a checkpoint continues with the same snapshot as before the crash (exactly-once
learning stays deterministic).

Numeric features are the canonical features whose name has no ``=`` (categorical,
boolean and bag features always have one: ``name=value``). A feature not in the
snapshot yet (new, or seen once) is left out until a snapshot has it (so VW never sees
a raw value of a feature it will later see standardised); one with no spread so far is
only centred. Standardised values are clipped to ±:data:`CLIP` so one outlier cannot
swamp an update.
"""

from __future__ import annotations

import math
from typing import Any

from bandit.core.features import Namespaces

CLIP = 10.0
MAX_FEATURES = 10_000  # features tracked; further new ones pass unchanged


_NONE: dict[str, tuple[float, float]] = {}


class Snapshot:
    """Frozen statistics: ``(namespace, feature) → (mean, 1/sd)``; applied to features."""

    __slots__ = ("by_ns",)

    def __init__(self, by_ns: dict[str, dict[str, tuple[float, float]]] | None = None) -> None:
        self.by_ns = by_ns or {}

    def __bool__(self) -> bool:
        return bool(self.by_ns)

    def apply(self, context: Namespaces) -> Namespaces:
        """The features with every known numeric one standardised and the unknown
        numeric ones left out (a new dict; the argument is not changed)."""
        by_ns = self.by_ns
        out: Namespaces = {}
        for ns, feats in context.items():
            get = by_ns.get(ns, _NONE).get
            new: dict[str, float] = {}
            for name, x in feats.items():
                s = get(name)
                if s is None:
                    if "=" in name:
                        new[name] = x
                else:
                    z = (x - s[0]) * s[1]
                    new[name] = CLIP if z > CLIP else (-CLIP if z < -CLIP else z)
            if new:
                out[ns] = new
        return out

    def to_json(self) -> dict[str, Any]:
        return {ns: {k: [m, inv] for k, (m, inv) in feats.items()}
                for ns, feats in self.by_ns.items()}

    @classmethod
    def from_json(cls, obj: Any) -> Snapshot:
        """A snapshot from its JSON form; anything malformed is left out."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        if isinstance(obj, dict):
            for ns, feats in obj.items():
                if not isinstance(feats, dict):
                    continue
                d = {str(k): (float(v[0]), float(v[1])) for k, v in feats.items()
                     if isinstance(v, list) and len(v) == 2 and
                     all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)}
                if d:
                    out[str(ns)] = d
        return cls(out)


class Standardizer:
    """Running statistics of numeric features and the snapshot in use."""

    __slots__ = ("stats", "tracked", "current")

    def __init__(self) -> None:
        # namespace → feature → [count, mean, M2]
        self.stats: dict[str, dict[str, list[float]]] = {}
        self.tracked = 0
        self.current = Snapshot()

    def observe(self, context: Namespaces) -> None:
        """Add one context's (or offer's) numeric values to the statistics."""
        for ns, feats in context.items():
            acc = self.stats.get(ns)
            if acc is None:
                acc = self.stats[ns] = {}
            for name, x in feats.items():
                s = acc.get(name)
                if s is None:
                    if "=" in name or self.tracked >= MAX_FEATURES:
                        continue
                    s = acc[name] = [0.0, 0.0, 0.0]
                    self.tracked += 1
                n = s[0] + 1.0
                delta = x - s[1]
                mean = s[1] + delta / n
                s[0], s[1], s[2] = n, mean, s[2] + delta * (x - mean)

    def snapshot(self) -> Snapshot:
        """The statistics so far, frozen (features seen at least twice)."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for ns, acc in self.stats.items():
            d: dict[str, tuple[float, float]] = {}
            for name, (n, mean, m2) in acc.items():
                if n < 2:
                    continue
                var = m2 / (n - 1)
                d[name] = (mean, 1.0 / math.sqrt(var) if var > 1e-24 else 1.0)
            if d:
                out[ns] = d
        return Snapshot(out)

    def refresh(self) -> Snapshot:
        """Freeze the statistics so far as the snapshot in use; returns the one before."""
        before, self.current = self.current, self.snapshot()
        return before

    def state(self, served: Snapshot) -> dict[str, Any]:
        """What the manifest stores: the snapshot a saved model is served with, and the
        running statistics (the snapshot in use afterwards is theirs)."""
        return {"served": served.to_json(),
                "stats": {ns: {k: list(v) for k, v in acc.items()}
                          for ns, acc in self.stats.items()}}

    @classmethod
    def restore(cls, obj: Any) -> Standardizer:
        """From :meth:`state` (malformed entries are left out); in use: the snapshot of
        the restored statistics, as after the save that stored them."""
        std = cls()
        stats = obj.get("stats") if isinstance(obj, dict) else None
        if isinstance(stats, dict):
            for ns, acc in stats.items():
                if not isinstance(acc, dict):
                    continue
                d = {str(k): [float(x) for x in v] for k, v in acc.items()
                     if isinstance(v, list) and len(v) == 3 and
                     all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)}
                std.stats[str(ns)] = d
                std.tracked += len(d)
        std.current = std.snapshot()
        return std


def young_model(n: int, first: int = 32) -> bool:
    """Whether the learner publishes a young model (so refreshes its snapshot) after
    ``n`` events, without the time interval: at ``first``, ``2·first``, ``4·first``…
    (see ``BANDIT_CHECKPOINT_FIRST_EVENTS``)."""
    return first > 0 and n >= first and n % first == 0 and \
        (n // first) & (n // first - 1) == 0


def served_snapshot(feature_scale: Any) -> Snapshot:
    """The snapshot a server applies for a manifest's ``extra.feature_scale``."""
    return Snapshot.from_json(feature_scale.get("served")) \
        if isinstance(feature_scale, dict) else Snapshot()
