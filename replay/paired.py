r"""Paired differences between a candidate policy and the baseline on the same rows.

Two policies evaluated on the same logged rows have strongly correlated estimates
(the same rewards, the same logging probabilities), so the difference of their values
is known far better than the two intervals side by side suggest. Every estimator here
is a smooth function of row means, so its estimate :math:`\hat V` is, to first order,
:math:`V + \frac1n \sum_i \psi_i` with an influence value :math:`\psi_i` per row:

=======  ============================================================
IPS, DM, DR   :math:`\psi_i = c_i - \bar c` (the row's contribution)
SNIPS    :math:`\psi_i = w_i (r_i - \hat V) / \bar w`
SNDR     :math:`\psi_i = (\hat v_i - \bar{\hat v}) + w_i (r_i - \hat q_i - \hat C) / \bar w`
=======  ============================================================

The difference of two policies' estimates then has influence
:math:`\psi^{cand}_i - \psi^{base}_i` and standard error
:math:`\mathrm{sd}(\psi^{cand} - \psi^{base}) / \sqrt n`. With ``m`` candidates
compared against one baseline, each interval is at level :math:`1 - \alpha / m`
(Bonferroni), so all ``m`` hold together with probability at least
:math:`1 - \alpha`: a candidate whose corrected lower bound is above 0 beats the
baseline at family-wise level α, however many were tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from replay.estimators import DM, DR, IPS, SNDR, SNIPS, OPEData, _Base, _weights


@dataclass(frozen=True)
class Paired:
    """Candidate minus baseline for one estimator."""

    difference: float
    se: float
    ci: tuple[float, float]            # at level 1 - alpha
    ci_corrected: tuple[float, float]  # at level 1 - alpha / comparisons
    comparisons: int

    @property
    def lower(self) -> float:
        return self.ci_corrected[0]

    def as_dict(self) -> dict[str, object]:
        return {"difference": self.difference, "se": self.se, "ci": list(self.ci),
                "ci_corrected": list(self.ci_corrected), "comparisons": self.comparisons}


def influence(e: _Base, d: OPEData) -> tuple[float, np.ndarray]:
    """The estimate and its per-row influence values (see the module docstring)."""
    if isinstance(e, (IPS, DM, DR)):
        contrib = e.stats(d)[:, 0]
        m = float(contrib.mean())
        return m, contrib - m
    if isinstance(e, SNIPS):
        w = _weights(d)
        v = e.value(d)
        return v, w * (d.reward - v) / w.mean()
    if isinstance(e, SNDR):
        assert d.q_hat is not None and d.v_hat is not None
        w = _weights(d)
        resid = d.reward - d.q_hat
        corr = float((w * resid).sum() / w.sum())
        return e.value(d), (d.v_hat - d.v_hat.mean()) + w * (resid - corr) / w.mean()
    raise ValueError(f"no paired difference for estimator {e.label!r}")


def _z(level: float) -> float:
    return NormalDist().inv_cdf(1 - level / 2)


def paired(e: _Base, candidate: OPEData, baseline: OPEData, *, alpha: float = 0.05,
           comparisons: int = 1) -> Paired:
    """The candidate's estimate minus the baseline's, with normal intervals at level
    ``1 - alpha`` and ``1 - alpha / comparisons``. Both must be on the same rows."""
    if candidate.n != baseline.n or not np.array_equal(candidate.reward, baseline.reward):
        raise ValueError("a paired difference needs both policies on the same rows")
    if comparisons < 1:
        raise ValueError("comparisons must be at least 1")
    v_c, psi_c = influence(e, candidate)
    v_b, psi_b = influence(e, baseline)
    diff = v_c - v_b
    n = candidate.n
    se = float(np.std(psi_c - psi_b, ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    half, half_c = _z(alpha) * se, _z(alpha / comparisons) * se
    return Paired(diff, se, (diff - half, diff + half), (diff - half_c, diff + half_c),
                  comparisons)
