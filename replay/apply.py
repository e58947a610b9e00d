"""Publish a policy search's winner through the model store and the promotion guard.

A winner is published only when all of these hold:

1. it beats the logged policy: the Bonferroni-corrected lower bound of its paired
   difference to the logged policy is above zero (:attr:`OptimizeResult.winner`);
2. it is not the spec being served already, and, when the served spec is among the
   candidates, the corrected lower bound of the winner minus that spec's replay is
   above zero too (it beats the current settings on the same rows, not only the log);
3. no person has pinned the served version (a rollback is left alone: an error);
4. the promotion guard passes: a model of the winner's spec is trained over the logs
   in time order, leaving out the rows the learner's guard holds out (the same hash of
   the event id and share, ``BANDIT_GUARD_HOLDOUT``), and on the most recent of those
   rows its SNIPS value must not be below the served model's by more than the margin
   (:class:`bandit.learner.guard.PromotionGuard`, the learner's own check). With an
   empty store there is no served model to protect and the guard passes.

Publishing is what the Personalizer routes do for new learning settings: the model
becomes a new current version of the store that keeps the learner's offsets and join
state (:meth:`ModelStore.replace_model`), and the loop configuration's ``generation``
names it, so servers hot-swap to it and the learner learns on from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bandit.config.loop_admin import load_config
from bandit.config.settings import Settings
from bandit.core.events import utc_now
from bandit.core.policy_spec import PolicySpec
from bandit.core.vw_adapter import VWModel
from bandit.learner.guard import Held, PromotionGuard
from bandit.stores.modelstore import Manifest, ModelStore, ModelStoreError
from replay.logs import Logs
from replay.optimize import CandidateResult, OptimizeResult
from replay.policies import vw_inputs

_SLOT_SUFFIX = re.compile(r"#\d+$")


@dataclass(frozen=True)
class ApplyOutcome:
    applied: bool
    reason: str
    spec: str | None = None
    manifest: Manifest | None = None
    guard: dict[str, Any] = field(default_factory=dict)  # new/old values, rows
    served: bool = False  # the best spec is the one served already

    @property
    def exit_code(self) -> int:
        """0: published, or nothing to publish (the best spec is served already);
        2: no candidate beats the current policy (or the guard refused it)."""
        return 0 if self.applied or self.served else 2

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "reason": self.reason, "spec": self.spec,
                "served": self.served,
                "version": self.manifest.version if self.manifest else None,
                "guard": self.guard}


def guard_rows(logs: Logs, share: float) -> np.ndarray:
    """The rows the learner's promotion guard holds out (never learned): chosen by the
    same hash of the decision's event id."""
    g = PromotionGuard(0.0, share)
    multi = bool(logs.n) and int(logs.position.max()) > 0
    ids = (_SLOT_SUFFIX.sub("", e) if multi else e for e in logs.event_ids)
    return np.fromiter((g.held_out(e) for e in ids), bool, logs.n)


def train(logs: Logs, spec: PolicySpec, learn: np.ndarray, seed: int = 0
          ) -> tuple[VWModel, list[Held]]:
    """A fresh model of ``spec`` that learned the rows ``learn`` in time order, and the
    other rows as the guard's held-out events."""
    model = VWModel(spec.vw_args(seed))
    held: list[Held] = []
    try:
        for i, (ctx, lines) in enumerate(vw_inputs(logs)):
            chosen, reward, p = int(logs.chosen[i]), float(logs.reward[i]), \
                float(logs.pscore[i])
            if learn[i]:
                model.learn(ctx, lines, chosen, reward, p)
            else:
                held.append(Held(ctx, lines, chosen, reward, p))
    except BaseException:
        model.close()
        raise
    return model, held


def _served_spec(store: ModelStore) -> tuple[Manifest | None, PolicySpec | None]:
    man = store.serving()
    if man is None:
        return None, None
    try:
        return man, PolicySpec.parse(man.policy)
    except ValueError:
        return man, None  # a served spec this version cannot parse: compared by the guard


def current_spec(store_dir: str | Path, fallback: str) -> str:
    """The spec served from ``store_dir`` (else ``fallback``): what a winner must beat."""
    d = Path(store_dir)
    if not (d / "manifest.json").exists():
        return fallback
    _, spec = _served_spec(ModelStore(d))
    return str(spec) if spec is not None else fallback


def apply(result: OptimizeResult, logs: Logs, store_dir: str | Path, *,
          settings: Settings | None = None, margin: float | None = None,
          holdout: float | None = None, guard_size: int = 2000, seed: int = 0
          ) -> ApplyOutcome:
    """Publish ``result``'s winner to the store at ``store_dir`` if it passes every
    check (see the module docstring); nothing is written otherwise."""
    if logs.n != result.n:
        raise ValueError(f"the result is of {result.n} rows, the logs have {logs.n}: "
                         "apply a search to the logs it searched")
    s = settings or Settings()
    margin = s.guard_margin if margin is None else margin
    share = s.guard_holdout if holdout is None else holdout
    winner = result.winner
    if winner is None:
        best = result.best
        return ApplyOutcome(False, f"no candidate beats the logged policy: the best, "
                            f"{best.name}, has a corrected lower bound of "
                            f"{best.paired[result.rank_by].lower:+.5f} ({result.rank_by})")
    store = ModelStore(store_dir, s.model_keep)
    try:
        served, spec = _served_spec(store)
    except ModelStoreError as exc:
        raise ValueError(f"{store_dir}: {exc}") from None
    reason = store.pin_reason()
    if served is not None and reason not in (None, "guard"):
        # a person pinned what is served (a rollback): publishing would lift the pin
        raise ValueError(f"{store_dir}: version {served.version} is pinned ({reason}); "
                         "unpin it (bandit-learn models unpin) before applying")
    refused = _against_served(result, winner, spec)
    if refused is not None:
        return refused
    held_mask = guard_rows(logs, share)
    model, held = train(logs, winner.candidate.spec, ~held_mask, seed)
    try:
        guard = PromotionGuard(margin, share, guard_size)
        guard.events.extend(held[-guard_size:])
        report: dict[str, Any] = {"rows": len(guard.events), "margin": margin}
        refused = _guard_refuses(store, store_dir, served, model, guard, winner.name,
                                 report)
        if refused is not None:
            return refused
        manifest = _publish(store, s, model, result, winner)
    finally:
        model.close()
    return ApplyOutcome(True, f"published {winner.name} as version {manifest.version}",
                        winner.name, manifest, report)


def _against_served(result: OptimizeResult, winner: CandidateResult, spec: PolicySpec | None
                    ) -> ApplyOutcome | None:
    """The outcome when the winner is what is served already, or does not beat it on
    the logs; None when it may go on."""
    name = winner.name
    if spec is not None and str(spec) == name:
        return ApplyOutcome(False, f"already served: {name} is the best candidate", name,
                            served=True)
    if spec is None:
        return None
    try:
        cur = result.result(spec)
    except KeyError:
        return None
    vs = result.versus(winner, cur)
    if vs.lower <= 0:
        return ApplyOutcome(False, f"{name} does not beat the served {spec}: "
                            f"corrected lower bound {vs.lower:+.5f} ({result.rank_by})", name)
    return None


def _guard_refuses(store: ModelStore, store_dir: str | Path, served: Manifest | None,
                   model: VWModel, guard: PromotionGuard, name: str,
                   report: dict[str, Any]) -> ApplyOutcome | None:
    """The outcome when the promotion guard finds ``model`` worse than the served one on
    the held-out rows (their values go in ``report``); None when it passes."""
    if served is None or not guard.events:
        return None
    try:
        old = store.load(served)
    except ModelStoreError as exc:
        raise ValueError(f"{store_dir}: the served model cannot be loaded to "
                         f"compare with: {exc}") from None
    try:
        ok, v_new, v_old = guard.passes(model, old)
    finally:
        old.close()
    report.update(new=v_new, old=v_old, served=served.version)
    if ok:
        return None
    return ApplyOutcome(False, f"the promotion guard refused {name}: SNIPS "
                        f"{v_new:.5f} against {v_old:.5f} for the served "
                        f"version {served.version} on {len(guard.events)} "
                        "held-out rows", name, None, report)


def _publish(store: ModelStore, s: Settings, model: VWModel, result: OptimizeResult,
             winner: CandidateResult) -> Manifest:
    """Put ``model`` in place of the served one and tell learners to adopt it (a new
    generation in the loop's configuration)."""
    name = winner.name
    manifest = store.replace_model(model, name, extra={"optimized": {
        "spec": name, "rows": result.n, "rank_by": result.rank_by,
        "lower_bound": winner.paired[result.rank_by].lower,
        "difference": winner.paired[result.rank_by].difference,
        "published_at": utc_now()}})
    config = load_config(store, s)
    store.write_config(replace(config, generation=config.generation + 1,
                               generation_version=manifest.version,
                               generation_at=utc_now()).to_json())
    return manifest
