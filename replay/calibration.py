"""How well each head's predicted probabilities match what happened: ECE, reliability
curves and AUC, per head, with a report (and an optional plot).

For predictions ``p_i ∈ [0, 1]`` and outcomes ``y_i ∈ {0, 1}`` (weights ``w_i``, 1 by
default; ``1/π₀`` for the IPS view over every offer):

* Reliability curve: the predictions cut into *B* bins (``uniform``: equal width on
  [0, 1]; ``quantile``: equal counts); per bin its weight ``W_b``, mean prediction
  ``p̄_b`` and observed rate ``ȳ_b``.
* Expected calibration error: ``ECE = Σ_b (W_b / W) · |ȳ_b − p̄_b|``.
* AUC: the probability that a random positive is scored above a random negative (ties
  count one half), ``(R₊ − n₊(n₊+1)/2) / (n₊ n₋)`` with ``R₊`` the positives' rank sum
  (mid-ranks for ties); weighted, the same over pairs weighted ``w_i w_j``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bandit.value.calibration import weighted_arrays

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Bin:
    lo: float
    hi: float
    weight: float
    predicted: float  # mean prediction in the bin
    observed: float   # observed rate in the bin


def reliability_curve(p: Sequence[float] | Array, y: Sequence[float] | Array,
                      bins: int = 15, strategy: str = "uniform",
                      weight: Sequence[float] | Array | None = None) -> list[Bin]:
    """The non-empty bins of the reliability curve (see the module docstring)."""
    pa, ya, wa = weighted_arrays(p, y, weight)
    if bins < 1:
        raise ValueError("bins must be ≥ 1")
    clipped = np.clip(pa, 0.0, 1.0)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(clipped, np.linspace(0.0, 1.0, bins + 1)))
        if len(edges) < 2:
            edges = np.array([edges[0], edges[0]])
    else:
        raise ValueError(f"unknown strategy {strategy!r}; expected uniform or quantile")
    idx = np.clip(np.searchsorted(edges, clipped, side="right") - 1, 0, len(edges) - 2)
    out = []
    for b in range(len(edges) - 1):
        m = idx == b
        wb = float(wa[m].sum())
        if wb <= 0:
            continue
        out.append(Bin(float(edges[b]), float(edges[b + 1]), wb,
                       float((wa[m] * pa[m]).sum() / wb), float((wa[m] * ya[m]).sum() / wb)))
    return out


def ece(p: Sequence[float] | Array, y: Sequence[float] | Array, bins: int = 15,
        strategy: str = "uniform", weight: Sequence[float] | Array | None = None) -> float:
    """Expected calibration error over the reliability curve's bins."""
    curve = reliability_curve(p, y, bins, strategy, weight)
    total = sum(b.weight for b in curve)
    return sum(b.weight * abs(b.observed - b.predicted) for b in curve) / total


def auc(p: Sequence[float] | Array, y: Sequence[float] | Array,
        weight: Sequence[float] | Array | None = None) -> float:
    """Area under the ROC curve (NaN when the outcomes are all one class)."""
    pa, ya, wa = weighted_arrays(p, y, weight)
    pos = ya > 0.5
    wp, wn = float(wa[pos].sum()), float(wa[~pos].sum())
    if wp <= 0 or wn <= 0:
        return float("nan")
    order = np.argsort(pa, kind="mergesort")
    ps, pos_s, ws = pa[order], pos[order], wa[order]
    # sweep groups of tied scores: each positive beats the negatives below, ties half
    _, starts = np.unique(ps, return_index=True)
    ends = np.append(starts[1:], len(ps))
    below_neg = 0.0
    total = 0.0
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        gp = float(ws[s:e][pos_s[s:e]].sum())
        gn = float(ws[s:e][~pos_s[s:e]].sum())
        total += gp * (below_neg + 0.5 * gn)
        below_neg += gn
    return total / (wp * wn)


@dataclass(frozen=True)
class HeadCalibration:
    head: str
    events: int
    mean_predicted: float
    observed_rate: float
    ece: float
    auc: float
    curve: tuple[Bin, ...]

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["curve"] = [asdict(b) for b in self.curve]
        return d


def head_report(head: str, p: Sequence[float] | Array, y: Sequence[float] | Array,
                bins: int = 15, strategy: str = "uniform",
                weight: Sequence[float] | Array | None = None) -> HeadCalibration:
    pa, ya, wa = weighted_arrays(p, y, weight)
    curve = reliability_curve(pa, ya, bins, strategy, wa)
    total = float(wa.sum())
    return HeadCalibration(head, len(pa), float((wa * pa).sum() / total),
                           float((wa * ya).sum() / total), ece(pa, ya, bins, strategy, wa),
                           auc(pa, ya, wa), tuple(curve))


def report(predictions: Mapping[str, Sequence[float] | Array],
           outcomes: Mapping[str, Sequence[float] | Array], bins: int = 15,
           strategy: str = "uniform",
           weight: Sequence[float] | Array | None = None) -> dict[str, HeadCalibration]:
    """ECE, AUC and reliability curve of every head that has both predictions and
    outcomes (by head name)."""
    missing = sorted(set(predictions) - set(outcomes))
    if missing:
        raise ValueError(f"no outcomes for head(s) {', '.join(missing)}")
    return {h: head_report(h, predictions[h], outcomes[h], bins, strategy, weight)
            for h in predictions}


def plot(reports: Mapping[str, HeadCalibration], path: str | Path) -> Path:
    """Reliability diagram of each head (predicted vs observed, the diagonal is
    perfect calibration) written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    top = 0.0
    for name, r in reports.items():
        xs = [b.predicted for b in r.curve]
        ys = [b.observed for b in r.curve]
        top = max([top, *xs, *ys])
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {r.ece:.3f}, AUC {r.auc:.3f})")
    lim = min(1.0, top * 1.1 + 0.01)
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed rate")
    ax.legend(loc="upper left", fontsize=8)
    out = Path(path)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out
