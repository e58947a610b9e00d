"""Policy search on logged data: evaluate candidate specs counterfactually and rank them.

Each candidate spec is learned from scratch over the logs in time order with VW's own
off-policy learning: every row is scored before it is learned (progressive
validation), then learned with its logged action, reward and logging probability. The
candidate's probability of each logged action, row by row, gives its IPS, SNIPS and DR
estimates (with intervals) of what those settings would have earned over the logged
period, learning as they went. The logged policy is the baseline: every candidate's
estimate minus the baseline's on the same rows is a paired difference
(:mod:`replay.paired`) with an interval corrected for the number of candidates
(Bonferroni), and candidates are ranked by that corrected lower bound. The winner is
the top candidate when its lower bound is above zero; else nothing beats the logged
policy at the family-wise level α.

What the numbers mean: the value of a spec that explores less includes less cost of
exploring, but not the later benefit of what its exploration would have taught it (it
learns from the logged choices, not its own), so the search's view of the exploration
parameter leans towards exploring less. Candidates are evaluated in parallel
processes (``jobs``), each on the same logs.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from bandit.core.policy_spec import PolicySpec
from replay.estimators import Estimate, OPEData, _Base, by_name
from replay.evaluate import estimates
from replay.grid import Candidate, dedupe, default_grid
from replay.logs import Logs
from replay.paired import Paired, paired
from replay.policies import Logged, VWProgressive
from replay.reward_model import cross_fit


def default_spec() -> str:
    """The service's default policy spec (``BANDIT_POLICY``'s default)."""
    from bandit.config.settings import Settings

    return Settings.policy if not Settings.policy.startswith("lgbm:") else "epsilon:0.05"


@dataclass
class Scored:
    """One candidate's progressive pass: its probability of each logged action, its
    model-based value per row (DR, DM) and how long the pass took."""

    pi: np.ndarray
    v_hat: np.ndarray | None
    seconds: float


@dataclass
class CandidateResult:
    candidate: Candidate
    estimates: dict[str, Estimate]
    paired: dict[str, Paired]       # candidate minus the logged baseline
    seconds: float
    over_time: list[float] = field(default_factory=list)  # cumulative IPS, 2% steps
    data: OPEData | None = field(default=None, repr=False)  # for further paired tests

    @property
    def name(self) -> str:
        return self.candidate.name


@dataclass
class OptimizeResult:
    n: int
    skipped: int
    rank_by: str
    alpha: float
    baseline: dict[str, Estimate]        # the logged policy
    baseline_over_time: list[float]
    ranked: list[CandidateResult]        # best first (by corrected lower bound)
    problems: list[str] = field(default_factory=list)
    estimators: list[_Base] = field(default_factory=list, repr=False)

    @property
    def best(self) -> CandidateResult:
        return self.ranked[0]

    @property
    def winner(self) -> CandidateResult | None:
        """The best candidate if it beats the logged policy (corrected lower bound > 0)."""
        best = self.best
        return best if best.paired[self.rank_by].lower > 0 else None

    @property
    def current(self) -> CandidateResult | None:
        """The current spec's own result (the grid always has it)."""
        return next((r for r in self.ranked if r.candidate.origin == "current"), None)

    def versus(self, a: CandidateResult, b: CandidateResult) -> Paired:
        """``a`` minus ``b`` on the ranking estimator, corrected for the same number of
        comparisons as the ranking."""
        assert a.data is not None and b.data is not None
        e = next(e for e in self.estimators if e.label == self.rank_by)
        return paired(e, a.data, b.data, alpha=self.alpha, comparisons=len(self.ranked))

    def result(self, spec: str | PolicySpec) -> CandidateResult:
        name = str(PolicySpec.parse(spec) if isinstance(spec, str) else spec)
        for r in self.ranked:
            if r.name == name:
                return r
        raise KeyError(name)

    def as_json(self) -> dict[str, Any]:
        """Plain JSON types only (floats, not numpy scalars)."""
        winner = self.winner
        out = {
            "n": self.n, "skipped": self.skipped, "rank_by": self.rank_by,
            "alpha": self.alpha, "comparisons": len(self.ranked),
            "baseline": {"policy": "logged",
                         "estimates": {k: e.as_dict() for k, e in self.baseline.items()}},
            "candidates": [{"rank": i + 1, "spec": r.name, "origin": r.candidate.origin,
                            "estimates": {k: e.as_dict() for k, e in r.estimates.items()},
                            "vs_logged": {k: p.as_dict() for k, p in r.paired.items()},
                            "seconds": r.seconds} for i, r in enumerate(self.ranked)],
            "winner": winner.name if winner is not None else None,
            "current": self.current.name if self.current is not None else None,
        }
        plain: dict[str, Any] = orjson.loads(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY))
        return plain


def check_logs(logs: Logs) -> None:
    """Raise ``ValueError`` for logs a search cannot use."""
    if logs.n == 0:
        raise ValueError("no usable rows in the logs")
    if logs.rows is None:
        raise ValueError("the logged features are needed (read the logs with "
                         "keep_rows=True: DSJSON or Kafka logs of decisions with offers)")


def score(logs: Logs, spec: PolicySpec | str, *, seed: int = 0,
          q: np.ndarray | None = None, progress: Callable[[int], None] | None = None
          ) -> Scored:
    """One candidate's progressive pass over ``logs`` (``q``: the reward model's
    (n, K) predictions, for DR and DM; ``progress`` is called with 1 per row)."""
    t0 = time.perf_counter()
    policy = VWProgressive(str(spec), seed, str(spec))
    dist, _ = policy.action_dist(logs, progress)
    pi = dist[np.arange(logs.n), logs.chosen]
    v_hat = None if q is None else np.nansum(dist * np.nan_to_num(q), axis=1)
    return Scored(pi, v_hat, time.perf_counter() - t0)


# -- parallel passes: the logs reach each worker process once ------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(logs: Logs, q: np.ndarray | None, seed: int) -> None:
    _WORKER.update(logs=logs, q=q, seed=seed)


def _score_in_worker(spec: str) -> Scored:
    return score(_WORKER["logs"], spec, seed=_WORKER["seed"], q=_WORKER["q"])


def start_method() -> str:
    """``fork`` shares the parsed logs with the workers without pickling them, but a
    process with other threads (a server calling the search) may hold locks a forked
    child would inherit locked: there the workers are spawned, the logs pickled."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


def score_all(logs: Logs, candidates: Sequence[Candidate], *, jobs: int = 1, seed: int = 0,
              q: np.ndarray | None = None, progress: bool = False) -> list[Scored]:
    """Every candidate's pass, in ``jobs`` processes (0: one per core)."""
    jobs = jobs or os.cpu_count() or 1
    bar: Any = None
    if progress:
        from tqdm import tqdm

        # rows of every candidate: a serial pass moves it row by row, a worker's when done
        bar = tqdm(total=len(candidates) * logs.n, desc=f"{len(candidates)} candidates",
                   unit=" rows", unit_scale=True, leave=False)
    out: list[Scored | None] = [None] * len(candidates)
    try:
        if jobs <= 1 or len(candidates) <= 1:
            tick = None if bar is None else bar.update
            for i, c in enumerate(candidates):
                out[i] = _scored(c, lambda c=c: score(logs, c.spec, seed=seed, q=q,
                                                      progress=tick))
        else:
            context = multiprocessing.get_context(start_method())
            with ProcessPoolExecutor(min(jobs, len(candidates)), mp_context=context,
                                     initializer=_init_worker,
                                     initargs=(logs, q, seed)) as pool:
                futures = {pool.submit(_score_in_worker, str(c.spec)): i
                           for i, c in enumerate(candidates)}
                for f in as_completed(futures):
                    i = futures[f]
                    out[i] = _scored(candidates[i], f.result)
                    if bar is not None:
                        bar.update(logs.n)
    finally:
        if bar is not None:
            bar.close()
    return [s for s in out if s is not None]


def _scored(c: Candidate, run: Any) -> Scored:
    try:
        result: Scored = run()
    except (RuntimeError, ValueError) as exc:  # VW refuses a spec with a RuntimeError
        raise ValueError(f"{c.origin}: spec {c.name!r} could not be evaluated: {exc}") \
            from None
    except BrokenProcessPool:
        raise ValueError(f"{c.origin}: the process evaluating {c.name!r} died (out of "
                         "memory?); try fewer --jobs") from None
    return result


def _over_time(d: OPEData) -> list[float]:
    cum = np.cumsum(d.pi / d.pscore * d.reward) / np.arange(1, d.n + 1)
    step = max(1, d.n // 50)
    return [float(cum[i]) for i in range(step - 1, d.n, step)]


def candidates_of(candidates: Sequence[Candidate | str | PolicySpec] | None,
                  current: str | None = None) -> list[Candidate]:
    """Candidates from specs given as text, :class:`PolicySpec` or :class:`Candidate`
    (``None``: the default grid around ``current``); ``current``, when given, is among
    them, marked ``current``. A bad spec raises ``ValueError`` naming its position."""
    if candidates is None:
        return default_grid(current or default_spec())
    out: list[Candidate] = []
    for k, c in enumerate(candidates, 1):
        if isinstance(c, Candidate):
            out.append(c)
        elif isinstance(c, PolicySpec):
            out.append(Candidate(c, f"candidate {k}"))
        else:
            try:
                out.append(Candidate(PolicySpec.parse(c), f"candidate {k}"))
            except ValueError as exc:
                raise ValueError(f"candidate {k}: bad spec {c!r}: {exc}") from None
    out = dedupe(out)
    if current is None:
        return out
    try:
        base = PolicySpec.parse(current)
    except ValueError as exc:
        raise ValueError(f"current spec {current!r}: {exc}") from None
    marked = [Candidate(c.spec, "current") if c.spec == base else c for c in out]
    if all(c.spec != base for c in out):
        marked.insert(0, Candidate(base, "current"))
    return marked


def optimize(logs: Logs, candidates: Sequence[Candidate | str | PolicySpec] | None = None, *,
             estimators: str | Sequence[_Base] = "ips,snips,dr", rank_by: str | None = None,
             alpha: float = 0.05, jobs: int = 1, seed: int = 0, reward_model: str = "lgbm",
             folds: int = 5, n_bootstrap: int = 200, progress: bool = False,
             current: str | None = None) -> OptimizeResult:
    """Evaluate every candidate on ``logs`` (read with ``keep_rows=True``) and rank them
    by the corrected lower bound of their ``rank_by`` estimate minus the logged
    policy's (default: ``dr`` when it is among the estimators, else the first).

    ``candidates``: specs (text, :class:`PolicySpec` or :class:`Candidate`); ``None``
    is the default grid around ``current`` (default: the service's default spec);
    ``current`` is always among the candidates (:attr:`OptimizeResult.current`).
    ``jobs``: processes (0: one per core). Raises ``ValueError`` for unusable logs, a
    bad spec or a spec VW refuses."""
    check_logs(logs)
    candidates = candidates_of(candidates, current)
    if not candidates:
        raise ValueError("no candidate to evaluate")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    ests = by_name(estimators) if isinstance(estimators, str) else list(estimators)
    labels = [e.label for e in ests]
    rank_by = rank_by or ("dr" if "dr" in labels else labels[0])
    if rank_by not in labels:
        raise ValueError(f"rank_by {rank_by!r} is not among the estimators "
                         f"({', '.join(labels)})")
    fitted = cross_fit(logs, reward_model, folds, seed) if any(e.needs_model for e in ests) \
        else None
    q = None if fitted is None else fitted.q
    scored = score_all(logs, candidates, jobs=jobs, seed=seed, q=q, progress=progress)

    def data(pi: np.ndarray, v_hat: np.ndarray | None) -> OPEData:
        if fitted is None:
            return OPEData(logs.reward, logs.pscore, pi)
        return OPEData(logs.reward, logs.pscore, pi, fitted.q_logged, v_hat)

    logged_dist, _ = Logged().action_dist(logs)
    base_v = None if q is None else np.nansum(logged_dist * np.nan_to_num(q), axis=1)
    base = data(logged_dist[np.arange(logs.n), logs.chosen], base_v)
    m = len(candidates)
    results = []
    for c, s in zip(candidates, scored, strict=True):
        d = data(s.pi, s.v_hat)
        results.append(CandidateResult(
            c, estimates(d, ests, n_bootstrap, seed, alpha),
            {e.label: paired(e, d, base, alpha=alpha, comparisons=m) for e in ests},
            s.seconds, _over_time(d), d))
    ranked = rank(results, rank_by)
    return OptimizeResult(logs.n, logs.skipped, rank_by, alpha,
                          estimates(base, ests, n_bootstrap, seed, alpha), _over_time(base),
                          ranked, logs.problems, ests)


def rank(results: Sequence[CandidateResult], rank_by: str) -> list[CandidateResult]:
    """Best first: by the corrected lower bound of the paired difference, then by the
    difference itself; the original order breaks exact ties (the current spec first)."""
    def key(r: CandidateResult) -> tuple[float, float]:
        p = r.paired[rank_by]
        lower = p.lower if np.isfinite(p.lower) else -np.inf
        return (-lower, -p.difference)

    return sorted(results, key=key)


__all__ = ["CandidateResult", "OptimizeResult", "Scored", "candidates_of", "check_logs",
           "optimize", "rank", "score", "score_all"]
