"""Offline evaluations of learning settings on the loop's own joined logs (the work behind
Personalizer's evaluation and feature-importance routes), done by the replay.

Policies compared (Personalizer's ``policySource``):

* ``Online`` — what the loop served: the logging policy itself, so its estimate is the
  on-policy mean reward of the logs;
* ``Baseline`` — the action listed first (at every slot the first one left);
* ``Random`` — uniform over the eligible actions;
* ``Custom`` — each requested learning settings, learned from scratch over the logs in
  time order, each row predicted before its outcome is learned (progressive
  validation, :class:`replay.policies.VWProgressive`'s loop; here the final model is
  kept, so ``applyFromEvaluation`` can serve it);
* ``OfflineExperimentation`` — settings proposed by a policy search, when one ran.

Every policy is scored row by row with importance weights ``w = π(a|x) / p`` (``p`` the
logged probability): per minute of the logs the sums ``Σ w·r``, ``Σ w``, ``Σ (w·r)²``,
the row count and the rows with ``π > 0`` are kept, so any later aggregation interval
(5 minutes to a day) is rebuilt from them exactly. IPS is ``Σ w·r / n``, SNIPS
``Σ w·r / Σ w``.

Feature importance is ablation on the served model: a feature's score is the fraction
of logged decisions whose greedy choice changes when every value of that feature is
removed from the context and the actions (``0`` never matters, ``1`` always decides).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bandit.evaluation.evaluation_sums import MINUTE
from replay.logs import Logs

MAX_IMPORTANCE_ROWS = 500  # the most recent decisions ablated (each costs a predict per feature)


@dataclass(frozen=True)
class Candidate:
    """One policy to score: its Personalizer name, VW arguments, source and, for
    learned ones, the policy spec they compile to."""

    name: str
    arguments: str
    source: str
    spec: str | None = None


@dataclass
class Scored:
    candidate: Candidate
    bins: list[list[float]]  # [minute start, n, Σw·r, Σw, Σ(w·r)², rows with π>0]
    model_path: str | None = None


@dataclass
class Outcome:
    scored: list[Scored]
    rows: int
    importance: list[dict[str, Any]] = field(default_factory=list)
    replay: dict[str, Any] = field(default_factory=dict)


def in_range(logs: Logs, start: float, end: float) -> Logs:
    """The rows whose decision time is in ``[start, end)``."""
    keep = (logs.timestamp >= start) & (logs.timestamp < end)
    return logs if keep.all() else logs.subset(keep)


def _bins(ts: np.ndarray, w: np.ndarray, r: np.ndarray, pi: np.ndarray) -> list[list[float]]:
    minute = np.floor(ts / MINUTE) * MINUTE
    out = []
    for m in np.unique(minute):
        sel = minute == m
        wr = w[sel] * r[sel]
        out.append([float(m), float(sel.sum()), float(wr.sum()), float(w[sel].sum()),
                    float((wr * wr).sum()), float((pi[sel] > 0).sum())])
    return out


def _baseline(logs: Logs) -> np.ndarray:
    from replay.policies import rank_dist

    cols = np.broadcast_to(-np.arange(logs.candidates.shape[1], dtype=float),
                           logs.candidates.shape)
    return rank_dist(np.array(cols), logs)


def _progressive(logs: Logs, spec: str, seed: int, save_to: Path | None
                 ) -> tuple[np.ndarray, str | None]:
    """The distribution of ``spec`` learned progressively over ``logs``; the final model
    is saved to ``save_to`` when given."""
    from replay.policies import VWProgressive

    saved = str(save_to) if save_to is not None else None
    dist, _ = VWProgressive(spec, seed, save_to=saved).action_dist(logs)
    return dist, saved


def score(logs: Logs, candidates: Sequence[Candidate], seed: int = 0,
          model_dir: Path | None = None) -> list[Scored]:
    """Every candidate's per-minute importance-weighted sums on ``logs``."""
    from replay.policies import Logged, Uniform

    rows = np.arange(logs.n)
    out = []
    for k, cand in enumerate(candidates):
        path = None
        if cand.source == "Online":
            dist = Logged().action_dist(logs)[0]
        elif cand.source == "Baseline":
            dist = _baseline(logs)
        elif cand.source == "Random":
            dist = Uniform().action_dist(logs)[0]
        else:
            assert cand.spec is not None
            target = model_dir / f"policy-{k}.vw" if model_dir is not None else None
            dist, path = _progressive(logs, cand.spec, seed, target)
        pi = dist[rows, logs.chosen]
        w = pi / logs.pscore
        out.append(Scored(cand, _bins(logs.timestamp, w, logs.reward, pi), path))
    return out


def replay_report(logs: Logs, candidates: Sequence[Candidate], seed: int = 0
                  ) -> Any:
    """The replay's own evaluation (IPS, SNIPS with bootstrap intervals, ranking
    metrics) of the same policies, for its JSON and HTML report."""
    from replay.estimators import IPS, SNIPS
    from replay.evaluate import evaluate
    from replay.policies import Logged, Uniform, VWProgressive

    pols: list[Any] = []
    for cand in candidates:
        if cand.source == "Online":
            pols.append(Logged(cand.name))
        elif cand.source == "Random":
            pols.append(Uniform(cand.name))
        elif cand.spec is not None:
            pols.append(VWProgressive(cand.spec, seed, cand.name))
    return evaluate(logs, pols, [IPS(), SNIPS()], seed=seed, n_bootstrap=100)


# -- feature importance ---------------------------------------------------------------------
def _group(name: str) -> str:
    """A feature's name without its categorical value (``device=mobile`` → ``device``)."""
    return name.partition("=")[0]


Predict = Callable[[Any, list[str]], list[float]]


def importance(logs: Logs, predict: Predict) -> list[dict[str, Any]]:
    """Ablation importance of every (namespace, feature) seen in the last
    :data:`MAX_IMPORTANCE_ROWS` decisions, most important first."""
    from bandit.core.vw_adapter import action_line
    from replay.policies import _vw_lines

    if logs.rows is None:
        raise ValueError("the logged features are needed")
    decisions: list[tuple[dict[str, dict[str, float]], list[dict[str, dict[str, float]]]]] = []
    seen: set[int] = set()
    for i in range(logs.n - 1, -1, -1):
        row = logs.rows[i]
        if id(row) in seen:
            continue
        seen.add(id(row))
        decisions.append(_vw_lines(row))
        if len(decisions) >= MAX_IMPORTANCE_ROWS:
            break
    groups: set[tuple[str, str]] = set()
    for ctx, offers in decisions:
        for part in (ctx, *offers):
            groups.update((ns, _group(f)) for ns, feats in part.items() for f in feats)

    def without(part: dict[str, dict[str, float]], ns: str, g: str) -> dict[str, dict[str, float]]:
        if ns not in part:
            return part
        kept = {f: v for f, v in part[ns].items() if _group(f) != g}
        return {**{k: v for k, v in part.items() if k != ns}, **({ns: kept} if kept else {})}

    greedy = []
    for ctx, offers in decisions:
        pmf = predict(ctx, [action_line(o) for o in offers])
        greedy.append(int(np.argmax(pmf)))
    out: list[dict[str, Any]] = []
    for ns, g in sorted(groups):
        flips = 0
        for (ctx, offers), best in zip(decisions, greedy, strict=True):
            pmf = predict(without(ctx, ns, g), [action_line(without(o, ns, g)) for o in offers])
            flips += int(np.argmax(pmf)) != best
        out.append({"namespace": ns, "featureName": g,
                    "score": flips / len(decisions) if decisions else 0.0})
    out.sort(key=lambda s: (-float(s["score"]), str(s["namespace"]), str(s["featureName"])))
    return out


def tiers(scores: list[dict[str, Any]]) -> list[list[str]]:
    """v1.1-preview.3's ``featureImportance``: feature names in three tiers (within a
    third of the top score, the next third, the rest that ever mattered)."""
    top = max((s["score"] for s in scores), default=0.0)
    if top <= 0:
        return []
    out: list[list[str]] = [[], [], []]
    for s in scores:
        if s["score"] > 0:
            k = 0 if s["score"] >= 2 * top / 3 else (1 if s["score"] >= top / 3 else 2)
            out[k].append(f"{s['namespace']}.{s['featureName']}")
    return [t for t in out if t]
