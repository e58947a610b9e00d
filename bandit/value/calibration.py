"""Calibration of a head's predicted probability, fitted on held-out recent events.

A head's regression ĥ(x, a) ranks offers well but its values need not be
probabilities: a prediction of 0.1 should be followed by a click one time in ten. A
calibrator is a monotone map *g* with ``g(ĥ) ≈ P(y = 1 | ĥ)``, fitted on pairs
(ĥ_i, y_i) of events the head had *not* learned when it predicted ĥ_i (progressive
validation: each event is predicted, then learned), so the fit is out of sample.

* Isotonic (:class:`Isotonic`): the non-decreasing step function minimising
  ``Σ_i w_i (g(ĥ_i) − y_i)²``, by pool-adjacent-violators: sort by ĥ, then merge
  adjacent blocks while a block's weighted mean exceeds the next one's; each block's
  value is its weighted mean of *y*. Predictions interpolate linearly between the
  blocks' weighted mean ĥ and are clamped at the ends.
* Platt (:class:`Platt`): ``g(ĥ) = σ(A ĥ + B)``, *A*, *B* by Newton's method on the
  log-loss with Platt's smoothed targets ``t₊ = (N₊ + 1)/(N₊ + 2)``,
  ``t₋ = 1/(N₋ + 2)`` (no probability of exactly 0 or 1 from few events).

Weights ``w_i`` may be the inverse logged probabilities ``1/p_i`` (IPS): the logged
events over-represent the offers the policy favours; weighting by ``1/p`` calibrates
over every offer instead (the default weighs events equally: calibrated where the
policy shows offers).

Refresh rule (:class:`CalibrationWindow`): keep the last ``size`` held-out pairs;
refit once ``min_events`` are held and then every ``refresh_every`` new pairs, so the
map follows the head as it learns, and always from its recent predictions.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


class Calibrator(Protocol):
    def __call__(self, raw: Array) -> Array: ...


def weighted_arrays(raw: Sequence[float] | Array, outcome: Sequence[float] | Array,
                    weight: Sequence[float] | Array | None) -> tuple[Array, Array, Array]:
    """Predictions, outcomes and weights (1 when None) as float arrays, checked: equal
    lengths, not empty, finite, weights ≥ 0 with a positive sum (ValueError if not).
    The calibrators and the replay's calibration report read their inputs through it."""
    x = np.asarray(raw, dtype=np.float64).ravel()
    y = np.asarray(outcome, dtype=np.float64).ravel()
    w = np.ones_like(x) if weight is None else np.asarray(weight, dtype=np.float64).ravel()
    if not len(x) == len(y) == len(w):
        raise ValueError("predictions, outcomes and weights differ in length")
    if len(x) == 0:
        raise ValueError("no events to calibrate on")
    if not (np.isfinite(x).all() and np.isfinite(y).all() and np.isfinite(w).all()):
        raise ValueError("predictions, outcomes and weights must be finite")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be ≥ 0 with a positive sum")
    return x, y, w


@dataclass(frozen=True)
class Isotonic:
    """A fitted isotonic calibrator: knots ``x`` (increasing) and values ``y``
    (non-decreasing)."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    @classmethod
    def fit(cls, raw: Sequence[float] | Array, outcome: Sequence[float] | Array,
            weight: Sequence[float] | Array | None = None) -> Isotonic:
        x, y, w = weighted_arrays(raw, outcome, weight)
        # equal predictions form one point (their weighted mean outcome), so the knots
        # come out strictly increasing
        x, inverse = np.unique(x, return_inverse=True)
        wy = np.bincount(inverse, weights=w * y).astype(np.float64)
        w = np.bincount(inverse, weights=w).astype(np.float64)
        y = np.divide(wy, w, out=np.zeros_like(wy), where=w > 0)
        # pool-adjacent-violators over blocks (weighted sums of w, w·y, w·x)
        sw: list[float] = []
        swy: list[float] = []
        swx: list[float] = []
        for xi, yi, wi in zip(x.tolist(), y.tolist(), w.tolist(), strict=True):
            sw.append(wi)
            swy.append(wi * yi)
            swx.append(wi * xi)
            while len(sw) > 1 and swy[-2] * sw[-1] >= swy[-1] * sw[-2]:
                # the previous block's mean is ≥ this one's: merge (ties too, so the
                # knots come out strictly increasing in value)
                w2, wy2, wx2 = sw.pop(), swy.pop(), swx.pop()
                sw[-1] += w2
                swy[-1] += wy2
                swx[-1] += wx2
        keep = [i for i, s in enumerate(sw) if s > 0]
        if not keep:
            raise ValueError("weights must be ≥ 0 with a positive sum")
        kx = [swx[i] / sw[i] for i in keep]
        ky = [swy[i] / sw[i] for i in keep]
        return cls(tuple(kx), tuple(ky))

    def __call__(self, raw: Array) -> Array:
        return np.interp(np.asarray(raw, dtype=np.float64), self.x, self.y)


def _sigmoid(z: Array) -> Array:
    out: Array = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
    return out


@dataclass(frozen=True)
class Platt:
    """A fitted Platt calibrator ``σ(a·ĥ + b)``."""

    a: float
    b: float

    @classmethod
    def fit(cls, raw: Sequence[float] | Array, outcome: Sequence[float] | Array,
            weight: Sequence[float] | Array | None = None, iterations: int = 100) -> Platt:
        x, y, w = weighted_arrays(raw, outcome, weight)
        pos = float(w[y > 0.5].sum())
        neg = float(w[y <= 0.5].sum())
        hi, lo = (pos + 1) / (pos + 2), 1 / (neg + 2)
        t = np.where(y > 0.5, hi, lo)
        a, b = 0.0, math.log((pos + 1) / (neg + 1))
        for _ in range(iterations):
            p = _sigmoid(a * x + b)
            g = p - t
            grad = np.array([(w * g * x).sum(), (w * g).sum()])
            s = w * p * (1 - p)
            hess = np.array([[(s * x * x).sum(), (s * x).sum()],
                             [(s * x).sum(), s.sum()]]) + 1e-12 * np.eye(2)
            try:
                step = np.linalg.solve(hess, grad)
            except np.linalg.LinAlgError:
                break
            a, b = a - float(step[0]), b - float(step[1])
            if abs(step).max() < 1e-10:
                break
        return cls(a, b)

    def __call__(self, raw: Array) -> Array:
        return _sigmoid(self.a * np.asarray(raw, dtype=np.float64) + self.b)


def fit(method: str, raw: Sequence[float] | Array, outcome: Sequence[float] | Array,
        weight: Sequence[float] | Array | None = None) -> Isotonic | Platt:
    """Fit ``isotonic`` or ``platt``."""
    if method == "isotonic":
        return Isotonic.fit(raw, outcome, weight)
    if method == "platt":
        return Platt.fit(raw, outcome, weight)
    raise ValueError(f"unknown calibration method {method!r}; expected isotonic or platt")


class CalibrationWindow:
    """The last ``size`` held-out (prediction, outcome, weight) events of a head and
    the calibrator fitted on them, refreshed by the rule in the module docstring.
    ``current`` is None until ``min_events`` were added."""

    def __init__(self, method: str = "isotonic", size: int = 20_000,
                 min_events: int = 1_000, refresh_every: int = 1_000) -> None:
        if method not in ("isotonic", "platt"):
            raise ValueError(f"unknown calibration method {method!r}; expected isotonic "
                             "or platt")
        if not 1 <= min_events <= size or refresh_every < 1:
            raise ValueError("need 1 ≤ min_events ≤ size and refresh_every ≥ 1")
        self.method = method
        self.size = size
        self.min_events = min_events
        self.refresh_every = refresh_every
        self._events: deque[tuple[float, float, float]] = deque(maxlen=size)
        self._since = 0
        self.current: Isotonic | Platt | None = None
        self.fits = 0

    def add(self, prediction: float, outcome: float, weight: float = 1.0) -> bool:
        """Hold one event out (predicted before the head learned it); True if the
        calibrator was refitted."""
        if not (math.isfinite(prediction) and math.isfinite(outcome) and
                math.isfinite(weight) and weight >= 0):
            return False  # (nothing a client sends can poison the calibrator)
        self._events.append((prediction, outcome, weight))
        self._since += 1
        due = self.current is None or self._since >= self.refresh_every
        if due and len(self._events) >= self.min_events:
            self.refit()
            return True
        return False

    def refit(self) -> None:
        if not self._events:
            return
        x, y, w = (np.array(c) for c in zip(*self._events, strict=True))
        self.current = fit(self.method, x, y, w)
        self._since = 0
        self.fits += 1

    def __call__(self, raw: Array) -> Array:
        """Calibrated predictions (the raw ones until the first fit)."""
        cal = self.current
        return np.asarray(raw, dtype=np.float64) if cal is None else cal(raw)

    def events(self) -> list[tuple[float, float, float]]:
        """The held-out (prediction, outcome, weight) events, oldest first."""
        return list(self._events)

    def restore(self, events: list[tuple[float, float, float]],
                current: Isotonic | Platt | None) -> None:
        """Hold ``events`` and serve ``current`` (as saved with a checkpoint)."""
        self._events.clear()
        self._events.extend(events)
        self.current = current
        self._since = 0

    def state(self) -> dict[str, object]:
        return {"method": self.method, "events": len(self._events), "fits": self.fits,
                "fitted": self.current is not None}
