"""A/B comparison of experiment arms from the logs: per arm the mean reward, CTR and
rate of each reward kind with normal intervals, and for each arm against the control
a two-sided z-test of the difference and the sample size per arm that a test at
α = 0.05 with 80% power would need to detect the observed difference.

Arms are compared on what they actually showed (on-policy, slot-1 rows), which is
what an A/B test measures; ``bandit-replay evaluate`` answers the counterfactual
question instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from replay.logs import Logs

Z = NormalDist()


@dataclass(frozen=True)
class ArmStats:
    name: str
    n: int
    mean: float
    ci: tuple[float, float]
    var: float
    rates: dict[str, float]


def arm_stats(name: str, reward: np.ndarray, kinds: dict[str, np.ndarray],
              alpha: float = 0.05) -> ArmStats:
    n = int(reward.size)
    mean = float(reward.mean()) if n else float("nan")
    var = float(reward.var(ddof=1)) if n > 1 else float("nan")
    half = Z.inv_cdf(1 - alpha / 2) * math.sqrt(var / n) if n > 1 else float("nan")
    return ArmStats(name, n, mean, (mean - half, mean + half), var,
                    {k: float(v.mean()) for k, v in kinds.items()})


def compare(a: ArmStats, control: ArmStats, alpha: float = 0.05,
            power: float = 0.8) -> dict[str, Any]:
    diff = a.mean - control.mean
    se = math.sqrt(a.var / a.n + control.var / control.n) if a.n > 1 and control.n > 1 \
        else float("nan")
    z = diff / se if se and se == se else float("nan")
    p = 2 * (1 - Z.cdf(abs(z))) if z == z else float("nan")
    half = Z.inv_cdf(1 - alpha / 2) * se if se == se else float("nan")
    needed = float("nan")
    if diff != 0 and a.var == a.var and control.var == control.var:
        needed = math.ceil((Z.inv_cdf(1 - alpha / 2) + Z.inv_cdf(power)) ** 2 *
                           (a.var + control.var) / diff ** 2)
    return {"difference": diff, "ci": [diff - half, diff + half], "z": z, "p_value": p,
            "n_needed_per_arm": needed}


def compare_arms(logs: Logs, control: str | None = None, alpha: float = 0.05,
                 segments: list[str | None] | None = None) -> dict[str, Any]:
    if logs.arms is None:
        raise ValueError("the logs carry no experiment arms (set BANDIT_EXPERIMENT)")
    first = logs.position == 0
    arms = np.array(logs.arms, dtype=object)
    names = sorted({a for a in arms[first] if a})
    if not names:
        raise ValueError("no row has an arm")
    ctrl = control or names[0]
    if ctrl not in names:
        raise ValueError(f"control arm {ctrl!r} is not in the logs ({', '.join(names)})")
    stats = {}
    for name in names:
        sel = first & (arms == name)
        stats[name] = arm_stats(name, logs.reward[sel], {k: v[sel] for k, v in
                                                         logs.kinds.items()}, alpha)
    out: dict[str, Any] = {"control": ctrl, "arms": {}}
    for name, s in stats.items():
        row: dict[str, Any] = {"n": s.n, "mean_reward": s.mean, "ci": list(s.ci),
                               "rates": s.rates}
        if name != ctrl:
            row["vs_control"] = compare(s, stats[ctrl], alpha)
        out["arms"][name] = row
    if segments is not None:  # the same comparison within each segment
        seg = np.array([str(x) for x in segments], dtype=object)
        out["segments"] = {}
        for value in sorted(set(seg[first])):
            sel = first & (seg == value)
            per = {name: arm_stats(name, logs.reward[sel & (arms == name)], {}, alpha)
                   for name in names if (sel & (arms == name)).sum() > 1}
            if ctrl in per:
                out["segments"][value] = {
                    name: {"n": s.n, "mean_reward": s.mean,
                           **({"vs_control": compare(s, per[ctrl], alpha)}
                              if name != ctrl else {})} for name, s in per.items()}
    return out
