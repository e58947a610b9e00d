r"""Off-policy estimators of a target policy's value from logged bandit feedback.

Every estimator is a frozen dataclass with ``estimate(data, ...) -> Estimate``.
``data`` (:class:`OPEData`) holds, per logged row *i* (a shown slot):

* ``reward`` :math:`r_i`, ``pscore`` :math:`p_i` (logging probability of the
  chosen action at its position),
* ``pi`` :math:`\pi(a_i \mid x_i, k_i)`: the target policy's probability of the
  logged action at the logged position,
* ``q_hat`` :math:`\hat q(x_i, a_i)` and ``v_hat``
  :math:`\hat v_i = \sum_a \pi(a \mid x_i, k_i)\, \hat q(x_i, a)` from a reward
  model (only DM and the DR family need them).

With :math:`w_i = \pi_i / p_i`:

=======  ==============================================================
IPS      :math:`\frac1n \sum_i w_i r_i` (``clip`` caps :math:`w_i`)
SNIPS    :math:`\sum_i w_i r_i / \sum_i w_i`
DM       :math:`\frac1n \sum_i \hat v_i`
DR       :math:`\frac1n \sum_i \hat v_i + w_i (r_i - \hat q_i)`
SNDR     :math:`\frac1n \sum_i \hat v_i + \sum_i w_i (r_i - \hat q_i) / \sum_i w_i`
=======  ==============================================================

Each row contributes to the estimate as in the Open Bandit Pipeline's position-
based convention, so IPS and SNIPS equal obp's IPW and SNIPW on the same arrays.

Intervals: ``normal`` is the CLT interval (delta method for the self-normalised
ratios); ``bootstrap`` resamples rows with a seeded generator (percentile method).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class OPEData:
    reward: np.ndarray
    pscore: np.ndarray
    pi: np.ndarray
    q_hat: np.ndarray | None = None
    v_hat: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.reward.shape[0]
        for name in ("pscore", "pi", "q_hat", "v_hat"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n,):
                raise ValueError(f"{name} has shape {arr.shape}, expected ({n},)")
        if n and (np.any(self.pscore <= 0) or np.any(self.pscore > 1)):
            raise ValueError("pscore must be in (0, 1]")
        if n and (np.any(self.pi < 0) or np.any(self.pi > 1 + 1e-9)):
            raise ValueError("pi must be in [0, 1]")

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])

    def take(self, idx: np.ndarray) -> OPEData:
        return OPEData(self.reward[idx], self.pscore[idx], self.pi[idx],
                       None if self.q_hat is None else self.q_hat[idx],
                       None if self.v_hat is None else self.v_hat[idx])


@dataclass(frozen=True)
class Estimate:
    value: float
    ci: tuple[float, float]          # the reported interval (bootstrap unless asked)
    ci_normal: tuple[float, float]
    n: int
    method: str = "bootstrap"
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"value": self.value, "ci": list(self.ci), "ci_normal": list(self.ci_normal),
                "n": self.n, **self.extra}


def _z(alpha: float) -> float:
    return NormalDist().inv_cdf(1 - alpha / 2)


def _mean_interval(contrib: np.ndarray, alpha: float) -> tuple[float, float]:
    n = contrib.shape[0]
    m = float(contrib.mean()) if n else float("nan")
    if n < 2:
        return (m, m)
    half = _z(alpha) * float(contrib.std(ddof=1)) / np.sqrt(n)
    return (m - half, m + half)


def _ratio_interval(num: np.ndarray, den: np.ndarray, alpha: float,
                    offset: float = 0.0) -> tuple[float, float]:
    """Delta-method interval for ``offset + Σnum / Σden``."""
    n = num.shape[0]
    sd = float(den.sum())
    if n < 2 or sd == 0:
        v = offset + (float(num.sum()) / sd if sd else 0.0)
        return (v, v)
    ratio = float(num.sum()) / sd
    resid = (num - ratio * den) / den.mean()
    half = _z(alpha) * float(resid.std(ddof=1)) / np.sqrt(n)
    return (offset + ratio - half, offset + ratio + half)


class _Base:
    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = False

    @property
    def label(self) -> str:
        return self.name

    def value(self, d: OPEData) -> float:
        raise NotImplementedError

    def normal_interval(self, d: OPEData, alpha: float) -> tuple[float, float]:
        raise NotImplementedError

    def stats(self, d: OPEData) -> np.ndarray:
        """Per-row columns whose (re-weighted) sums determine the estimate."""
        raise NotImplementedError

    def from_sums(self, sums: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Estimates from column sums ``sums`` (resamples × columns) over ``n`` rows
        (one row count per resample)."""
        raise NotImplementedError

    def estimate(self, d: OPEData, *, alpha: float = 0.05, n_bootstrap: int = 200,
                 seed: int = 0, method: str = "bootstrap") -> Estimate:
        if self.needs_model and (d.q_hat is None or d.v_hat is None):
            raise ValueError(f"{self.name} needs reward-model predictions (q_hat, v_hat)")
        v = self.value(d)
        normal = self.normal_interval(d, alpha)
        if method == "normal" or n_bootstrap <= 0 or d.n < 2:
            return Estimate(v, normal, normal, d.n, "normal")
        ci = bootstrap_many([self], d, n_bootstrap, seed, alpha)[self.label]
        return Estimate(v, ci, normal, d.n, "bootstrap")


def _weights(d: OPEData, clip: float | None = None) -> np.ndarray:
    w: np.ndarray = d.pi / d.pscore
    return np.minimum(w, clip) if clip is not None else w


@dataclass(frozen=True)
class IPS(_Base):
    """Inverse propensity scoring; ``clip`` caps the importance weights (biased,
    lower variance)."""

    clip: float | None = None
    name: ClassVar[str] = "ips"

    @property
    def label(self) -> str:
        return f"ips@{self.clip:g}" if self.clip is not None else "ips"

    def value(self, d: OPEData) -> float:
        return float(np.mean(d.reward * _weights(d, self.clip))) if d.n else float("nan")

    def normal_interval(self, d: OPEData, alpha: float) -> tuple[float, float]:
        return _mean_interval(d.reward * _weights(d, self.clip), alpha)

    def stats(self, d: OPEData) -> np.ndarray:
        out: np.ndarray = (d.reward * _weights(d, self.clip))[:, None]
        return out

    def from_sums(self, sums: np.ndarray, n: np.ndarray) -> np.ndarray:
        out: np.ndarray = sums[:, 0] / n
        return out


@dataclass(frozen=True)
class SNIPS(_Base):
    """Self-normalised IPS: invariant to reward shifts' scale, bounded by the rewards."""

    name: ClassVar[str] = "snips"

    def value(self, d: OPEData) -> float:
        w = _weights(d)
        s = float(w.sum())
        return float((d.reward * w).sum()) / s if s else float("nan")

    def normal_interval(self, d: OPEData, alpha: float) -> tuple[float, float]:
        w = _weights(d)
        return _ratio_interval(d.reward * w, w, alpha)

    def stats(self, d: OPEData) -> np.ndarray:
        w = _weights(d)
        out: np.ndarray = np.column_stack([d.reward * w, w])
        return out

    def from_sums(self, sums: np.ndarray, n: np.ndarray) -> np.ndarray:
        out: np.ndarray = sums[:, 0] / sums[:, 1]
        return out


@dataclass(frozen=True)
class DM(_Base):
    """Direct method: the reward model's value of the target policy (biased when the
    model is wrong; no variance from the weights)."""

    name: ClassVar[str] = "dm"
    needs_model: ClassVar[bool] = True

    def value(self, d: OPEData) -> float:
        assert d.v_hat is not None
        return float(np.mean(d.v_hat)) if d.n else float("nan")

    def normal_interval(self, d: OPEData, alpha: float) -> tuple[float, float]:
        assert d.v_hat is not None
        return _mean_interval(d.v_hat, alpha)

    def stats(self, d: OPEData) -> np.ndarray:
        assert d.v_hat is not None
        return d.v_hat[:, None]

    def from_sums(self, sums: np.ndarray, n: np.ndarray) -> np.ndarray:
        out: np.ndarray = sums[:, 0] / n
        return out


@dataclass(frozen=True)
class DR(_Base):
    """Doubly robust: DM corrected by IPS on the model's residuals (unbiased when
    either the propensities or the reward model are right)."""

    clip: float | None = None
    name: ClassVar[str] = "dr"
    needs_model: ClassVar[bool] = True

    def _contrib(self, d: OPEData) -> np.ndarray:
        assert d.q_hat is not None and d.v_hat is not None
        out: np.ndarray = d.v_hat + _weights(d, self.clip) * (d.reward - d.q_hat)
        return out

    def value(self, d: OPEData) -> float:
        return float(np.mean(self._contrib(d))) if d.n else float("nan")

    def normal_interval(self, d: OPEData, alpha: float) -> tuple[float, float]:
        return _mean_interval(self._contrib(d), alpha)

    def stats(self, d: OPEData) -> np.ndarray:
        return self._contrib(d)[:, None]

    def from_sums(self, sums: np.ndarray, n: np.ndarray) -> np.ndarray:
        out: np.ndarray = sums[:, 0] / n
        return out


@dataclass(frozen=True)
class SNDR(_Base):
    """Self-normalised DR: the residual correction is normalised by Σw."""

    name: ClassVar[str] = "sndr"
    needs_model: ClassVar[bool] = True

    def value(self, d: OPEData) -> float:
        assert d.q_hat is not None and d.v_hat is not None
        w = _weights(d)
        s = float(w.sum())
        corr = float((w * (d.reward - d.q_hat)).sum()) / s if s else 0.0
        return float(np.mean(d.v_hat)) + corr if d.n else float("nan")

    def normal_interval(self, d: OPEData, alpha: float) -> tuple[float, float]:
        assert d.q_hat is not None and d.v_hat is not None
        w = _weights(d)
        base = float(np.mean(d.v_hat))
        lo, hi = _ratio_interval(w * (d.reward - d.q_hat), w, alpha, offset=base)
        v_lo, v_hi = _mean_interval(d.v_hat, alpha)  # conservative: add both spreads
        return (lo - (base - v_lo), hi + (v_hi - base))

    def stats(self, d: OPEData) -> np.ndarray:
        assert d.q_hat is not None and d.v_hat is not None
        w = _weights(d)
        out: np.ndarray = np.column_stack([d.v_hat, w * (d.reward - d.q_hat), w])
        return out

    def from_sums(self, sums: np.ndarray, n: np.ndarray) -> np.ndarray:
        out: np.ndarray = sums[:, 0] / n + sums[:, 1] / sums[:, 2]
        return out


ESTIMATORS: dict[str, _Base] = {"ips": IPS(), "snips": SNIPS(), "dm": DM(), "dr": DR(),
                                "sndr": SNDR()}


def by_name(names: str) -> list[_Base]:
    out: list[_Base] = []
    for raw in names.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name.startswith("ips@"):  # clipped IPS, e.g. ips@10
            out.append(IPS(clip=float(name[4:])))
            continue
        if name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {name!r} (choose from "
                             f"{', '.join(ESTIMATORS)}, or ips@CLIP)")
        out.append(ESTIMATORS[name])
    if not out:
        raise ValueError("no estimator given")
    return out


BOOTSTRAP_CHUNK_CELLS = 8_000_000  # resamples × units held in memory at once
BLOCK_ABOVE = 200_000  # rows; above this the bootstrap resamples contiguous blocks
BLOCKS = 20_000


def bootstrap_many(estimators: list[_Base], d: OPEData, n_bootstrap: int,
                   seed: int | np.random.RandomState, alpha: float = 0.05, *,
                   by_rows: bool = False) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals for several estimators on the *same* resamples.

    Each estimator is a function of column sums of per-row statistics, so a resample
    is a vector of counts (how often each unit was drawn) and its sums are one matrix
    product: rows are never gathered, and every estimator shares the draw.

    Up to ``BLOCK_ABOVE`` rows the units are rows. Above it they are ``BLOCKS``
    contiguous blocks of rows (a block bootstrap): for independent rows the block
    sums are independent too and the interval is the same to within resampling
    noise, while drift over time in the logs widens it, as it should; and a
    million-row log resamples 20,000 units instead of a million. ``by_rows`` resamples
    rows whatever the size.

    ``seed`` may be a legacy ``RandomState``: its ``randint(0, n, n)`` draws are the
    indices ``RandomState.choice(samples, n)`` picks, so with ``by_rows=True`` the
    resamples are the Open Bandit Pipeline's (``estimate_interval(random_state=s)``
    is ``RandomState(s)``), and IPS and DR intervals equal its to rounding.
    """
    cols = [e.stats(d) for e in estimators]
    x = np.hstack(cols)
    spans, start = [], 0
    for c in cols:
        spans.append((start, start + c.shape[1]))
        start += c.shape[1]
    n = d.n
    if n > BLOCK_ABOVE and not by_rows:
        edges = np.linspace(0, n, BLOCKS + 1).astype(np.int64)[:-1]
        x = np.add.reduceat(x, edges, axis=0)
        sizes = np.diff(np.append(edges, n)).astype(np.float64)
    else:
        sizes = np.ones(n)
    units = x.shape[0]
    draw = seed.randint if isinstance(seed, np.random.RandomState) \
        else np.random.default_rng(seed).integers
    chunk = max(1, min(n_bootstrap, BOOTSTRAP_CHUNK_CELLS // max(units, 1)))
    sums = np.empty((n_bootstrap, x.shape[1]))
    rows = np.empty(n_bootstrap)
    for b0 in range(0, n_bootstrap, chunk):
        b1 = min(n_bootstrap, b0 + chunk)
        counts = np.empty((b1 - b0, units))
        for j in range(b1 - b0):
            counts[j] = np.bincount(draw(0, units, units, dtype=np.int64),
                                    minlength=units)
        sums[b0:b1] = counts @ x
        rows[b0:b1] = counts @ sizes
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for e, (a, b) in zip(estimators, spans, strict=True):
            vals = e.from_sums(sums[:, a:b], rows)
            vals = vals[np.isfinite(vals)]
            if not len(vals):
                out[e.label] = (float("nan"), float("nan"))
                continue
            out[e.label] = (float(np.quantile(vals, alpha / 2)),
                            float(np.quantile(vals, 1 - alpha / 2)))
    return out
