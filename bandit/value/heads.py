"""Per-objective heads and their combination into one honest, explored decision.

Heads. One online regression per reward ``kind`` (``click``, ``conversion``,
``value``, ...), each a VW ``--cb_adf`` model behind :class:`bandit.core.vw_adapter.VWModel`,
all learned from the same logged decisions: for a decision with context *x*, offers
*A*, chosen offer *a* drawn with logged probability *p*, and the rewards *r_k* of each
kind that arrived in its window (0 for a kind with none: the default reward), head *k*
learns the VW label ``a:−r_k:p``. With ``cb_type=mtr`` (the default) VW fits
``ĥ_k(x, a) ≈ E[r_k | x, a]`` by importance-weighted regression on the chosen offer,
each example weighted ∝ 1/p, which makes the squared loss an unbiased estimate of the
loss over all offers (IPS), whichever policy logged the decisions:

    E_{a∼π₀}[ (ĥ(x,a) − r)² / π₀(a|x) ] = Σ_a E[(ĥ(x,a) − r_a)²]

A head predicts −cost for each offer, in the offers' order (``VWModel.predict`` on a
``--cb_adf`` workspace returns VW's per-action costs). Because the heads share the
logged probabilities and not each other's objective, one logged stream trains them all
and a new objective needs no relearning.

Combination (:class:`ValuePolicy`). For each offer the heads' predictions and the
offer's numeric fields fill the objective (:class:`bandit.value.objective.Objective`),
giving a score *s_a*. Exploration turns the scores into a pmf (:class:`Exploration`):

* ``epsilon:ε`` — the best score with 1 − ε (shared among ties), ε spread uniformly;
* ``softmax:λ`` — ``p_a ∝ exp(λ (s_a − s*) / S)``;
* ``squarecb:γ`` — ``p_a = 1 / (K + γ_t (s* − s_a) / S)`` for *a* ≠ best, the rest on the
  best (Foster & Rakhlin's inverse gap weighting), ``γ_t = γ √t`` after *t* learned
  decisions (VW's ``--squarecb`` schedule);
* ``greedy`` — the best score with probability 1 (no exploration: use for tests only),

where *s** is the best score, *K* the number of offers and ``S = max_a |s_a|`` puts
scores of any unit (clicks, money) on one scale. Constraints then remove offers (before
exploration) or multiply their probabilities by weights in [0, 1] (after it), and the
pmf is renormalised. The offer is drawn from exactly that pmf (the event id's
reproducible draws of :func:`bandit.core.policy.event_rng`), and that probability is the
one logged, so replay (IPS, DR) over the logs stays unbiased. Slot *k* ≥ 2 is drawn
the same way from the offers not yet shown, with the slot feature in the context; its
logged probability is conditional on the slots above, as in :mod:`bandit.core.policy`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bandit.core.draws import draw as _draw
from bandit.core.draws import event_rng
from bandit.core.features import OFFER_PREFIX, Namespaces
from bandit.core.pmfs import epsilon_greedy as _epsilon_greedy
from bandit.core.slots import SLOT_NAMESPACE
from bandit.core.types import DecideRequest, Decision, Offer
from bandit.core.vw_adapter import VWModel
from bandit.value.objective import Array, Objective

DEFAULT_KINDS = ("click", "conversion", "value")
_CB_TYPES = ("mtr", "dr", "ips", "dm")


@dataclass(frozen=True)
class HeadSpec:
    """The VW arguments of a head: ``KEY=VALUE,...`` with ``bits`` (default 18), ``lr``,
    ``cb_type`` (``mtr`` default), ``interactions`` (``+``-separated namespace initials,
    default ``co``), ``l2``, ``power_t``."""

    bits: int = 18
    lr: float | None = None
    cb_type: str = "mtr"
    interactions: str = "co"
    l2: float | None = None
    power_t: float | None = None

    @classmethod
    def parse(cls, text: str) -> HeadSpec:
        """Parse ``KEY=VALUE,...``; a ``ValueError`` names the bad key or value."""
        kw: dict[str, object] = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or key not in ("bits", "lr", "cb_type", "interactions", "l2",
                                     "power_t"):
                raise ValueError(f"bad head parameter {item!r}; allowed: bits, lr, cb_type,"
                                 " interactions, l2, power_t")
            if key in ("cb_type", "interactions"):
                kw[key] = value.strip()
            else:
                try:
                    num = float(value)
                except ValueError:
                    raise ValueError(f"head parameter {key}={value!r} is not a number") \
                        from None
                kw[key] = int(num) if key == "bits" else num
        spec = cls(**kw)  # type: ignore[arg-type]
        spec.check()
        return spec

    def check(self) -> None:
        if not 8 <= self.bits <= 30:
            raise ValueError("head parameter bits must be between 8 and 30")
        if self.cb_type not in _CB_TYPES:
            raise ValueError(f"head parameter cb_type must be one of {', '.join(_CB_TYPES)}")
        for t in self.interactions.split("+"):
            if not (2 <= len(t) <= 3 and t.isascii() and t.isalpha()):
                raise ValueError(f"head parameter interactions={self.interactions!r}: terms"
                                 " of two or three namespace initials joined by '+'")
        for name in ("lr", "l2", "power_t"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v >= 0 and (name != "lr" or v > 0)):
                raise ValueError(f"head parameter {name} must be a finite number ≥ 0 "
                                 "(lr > 0)")

    def vw_args(self, seed: int = 0) -> str:
        args = ["--cb_adf", "--cb_type", self.cb_type, "--hash", "all", "--quiet",
                "--random_seed", str(seed), "-b", str(self.bits)]
        for t in self.interactions.split("+"):
            args += ["-q", t] if len(t) == 2 else ["--cubic", t]
        for flag, v in (("-l", self.lr), ("--l2", self.l2), ("--power_t", self.power_t)):
            if v is not None:
                args += [flag, repr(float(v))]
        return " ".join(args)


class Head:
    """One reward kind's regression: ``predict`` gives ĥ(x, a) per offer, ``learn`` one
    logged decision. ``calibrate``: an optional map of raw predictions to calibrated
    probabilities (see :mod:`bandit.value.calibration`), applied by ``predict``."""

    def __init__(self, kind: str, model: VWModel, reward: str | None = None,
                 given: str | None = None) -> None:
        self.kind = kind
        self.model = model
        self.reward = reward or kind
        self.given = given
        self.calibrate: Callable[[Array], Array] | None = None
        self.learned = 0

    @classmethod
    def fresh(cls, kind: str, spec: HeadSpec | None = None, seed: int = 0,
              reward: str | None = None, given: str | None = None) -> Head:
        return cls(kind, VWModel((spec or HeadSpec()).vw_args(seed)), reward, given)

    def predict_raw(self, context: Namespaces, lines: Sequence[str]) -> Array:
        """The model's predicted reward of each offer (−cost), uncalibrated."""
        return -np.asarray(self.model.predict(context, lines), dtype=np.float64)

    def predict(self, context: Namespaces, lines: Sequence[str]) -> Array:
        raw = self.predict_raw(context, lines)
        cal = self.calibrate
        return cal(raw) if cal is not None else raw

    def learn(self, context: Namespaces, lines: Sequence[str], chosen: int, reward: float,
              probability: float) -> None:
        if not 0.0 < probability <= 1.0:
            raise ValueError(f"logged probability {probability!r} must be in (0, 1]")
        self.model.learn(context, lines, chosen, reward, probability)
        self.learned += 1

    def close(self) -> None:
        self.model.close()


class Heads:
    """The heads of a service, by kind, all learned from the same logged decisions."""

    def __init__(self, heads: Mapping[str, Head]) -> None:
        if not heads:
            raise ValueError("at least one head is needed")
        self.by_kind = dict(heads)

    @classmethod
    def fresh(cls, kinds: Sequence[str] = DEFAULT_KINDS, spec: HeadSpec | None = None,
              seed: int = 0) -> Heads:
        return cls({k: Head.fresh(k, spec, seed) for k in kinds})

    @property
    def learned(self) -> int:
        """Decisions learned (the most any head learned)."""
        return max(h.learned for h in self.by_kind.values())

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.by_kind)

    def predict(self, context: Namespaces, lines: Sequence[str],
                kinds: Sequence[str] | None = None) -> dict[str, Array]:
        """Each head's (calibrated, where it has a calibrator) predictions, by kind;
        only ``kinds`` when given (those an objective uses)."""
        wanted = self.by_kind if kinds is None else {k: self.by_kind[k] for k in kinds}
        return {k: h.predict(context, lines) for k, h in wanted.items()}

    def learn(self, context: Namespaces, lines: Sequence[str], chosen: int,
              rewards: Mapping[str, float], probability: float) -> None:
        """Every head learns the decision: head *k* the reward of kind *k* (0 when none
        arrived: the default reward), at the logged probability."""
        for head in self.by_kind.values():
            if head.given is not None and not rewards.get(head.given, 0.0) > 0:
                continue
            head.learn(context, lines, chosen, float(rewards.get(head.reward, 0.0)),
                       probability)

    def close(self) -> None:
        for h in self.by_kind.values():
            h.close()


@dataclass(frozen=True)
class Exploration:
    """How scores become a pmf (see the module docstring): ``epsilon:ε``, ``softmax:λ``,
    ``squarecb:γ`` or ``greedy``."""

    kind: str = "squarecb"
    param: float = 10.0

    @classmethod
    def parse(cls, text: str) -> Exploration:
        kind, _, raw = text.strip().partition(":")
        kind = kind.strip().lower()
        defaults = {"epsilon": 0.05, "softmax": 10.0, "squarecb": 10.0, "greedy": 0.0}
        if kind not in defaults:
            raise ValueError(f"unknown exploration {kind!r}; expected one of "
                             f"{', '.join(defaults)}")
        try:
            param = float(raw) if raw else defaults[kind]
        except ValueError:
            raise ValueError(f"exploration parameter {raw!r} is not a number") from None
        if not math.isfinite(param) or param < 0 or (kind == "epsilon" and param > 1):
            raise ValueError(f"exploration parameter of {kind} out of range: {raw!r}")
        return cls(kind, param)

    def pmf(self, scores: Sequence[float], t: int = 0) -> list[float]:
        """The distribution over offers with these scores (sums to 1); ``t``: decisions
        learned so far (SquareCB's γ grows as γ·√t, as VW's ``--squarecb`` does)."""
        n = len(scores)
        s = [float(x) for x in scores]
        best = max(s)
        if self.kind == "epsilon":
            return _epsilon_greedy(s, self.param)
        if self.kind == "greedy":
            return _epsilon_greedy(s, 0.0)
        scale = max(abs(x) for x in s) or 1.0
        if self.kind == "softmax":
            w = [math.exp(self.param * (x - best) / scale) for x in s]
            total = sum(w)
            return [x / total for x in w]
        top = s.index(best)
        gamma = self.param * math.sqrt(max(t, 1))
        p = [0.0 if i == top else 1.0 / (n + gamma * (best - x) / scale)
             for i, x in enumerate(s)]
        p[top] = max(0.0, 1.0 - sum(p))
        return p

    def __str__(self) -> str:
        return self.kind if self.kind == "greedy" else f"{self.kind}:{self.param:g}"


def numeric_fields(features: Namespaces) -> dict[str, float]:
    """An offer's numeric features as objective fields: ``ns.name`` for feature *name*
    of offer namespace ``o<ns>`` (``offer.payout``), and plain ``name`` where only one
    namespace has it (``payout``). Categorical features (``name=value``) are not
    fields."""
    out: dict[str, float] = {}
    seen: dict[str, int] = {}
    for ns, feats in features.items():
        short = ns[len(OFFER_PREFIX):] if ns.startswith(OFFER_PREFIX) else ns
        for name, v in feats.items():
            if "=" in name:
                continue
            out[f"{short}.{name}" if short else name] = v
            seen[name] = seen.get(name, 0) + 1
    for feats in features.values():
        for name, v in feats.items():
            if "=" not in name and seen.get(name) == 1:
                out.setdefault(name, v)
    return out


# (slot, indices of the offers still available, indices already shown) → a weight per
# available offer: 0 removes it, a value in (0, 1) down-weights it
Adjust = Callable[[int, Sequence[int], Sequence[int]], Sequence[float]]


Priors = Callable[["Heads", Sequence[Offer], dict[str, Array]], dict[str, Array]]


class ValuePolicy:
    """Heads + objective + exploration: ``decide`` ranks a request's offers by the
    objective and draws them with honest probabilities. The objective can be swapped
    at any time (:meth:`set_objective`) without touching the heads."""

    def __init__(self, heads: Heads, objective: Objective,
                 exploration: Exploration | None = None, seed: int = 0,
                 version: str = "0") -> None:
        self.heads = heads
        self.exploration = exploration or Exploration()
        self.seed = seed
        self.version = version
        self._objective = self._checked(objective)
        self._lock = threading.Lock()
        # (heads, offers, predictions by head) → the predictions to rank by, e.g. with
        # cold-start priors for new offers (bandit.value.cold_start); None: as predicted
        self.priors: Priors | None = None

    def _checked(self, objective: Objective) -> Objective:
        missing = [h for h in objective.heads if h not in self.heads.by_kind]
        if missing:
            raise ValueError(f"objective {objective.text!r} names heads this policy does "
                             f"not have: {', '.join(missing)}")
        return objective

    @property
    def objective(self) -> Objective:
        return self._objective

    def set_objective(self, objective: Objective) -> None:
        """Rank by ``objective`` from the next decision on (no relearning)."""
        checked = self._checked(objective)
        with self._lock:
            self._objective = checked

    @property
    def name(self) -> str:
        return f"value({self._objective.text};{self.exploration})"

    def scores(self, context: Namespaces, offers: Sequence[Offer],
               fields: Sequence[Mapping[str, float]] | None = None,
               objective: Objective | None = None) -> tuple[Array, dict[str, Array]]:
        """The objective's score of each offer, and the head predictions it used.
        ``fields``: each offer's numeric fields (e.g. its catalogue entry's payout);
        by default (and where one lacks a name) its numeric features."""
        obj = objective or self._objective
        lines = [o.line for o in offers]
        preds = self.heads.predict(context, lines, obj.heads)
        if self.priors is not None:
            preds = self.priors(self.heads, offers, preds)
        columns: dict[str, Array] = dict(preds)
        for name in obj.fields:
            col = np.empty(len(offers))
            for i, o in enumerate(offers):
                given = fields[i] if fields is not None else {}
                if name in given:
                    col[i] = given[name]
                else:
                    own = numeric_fields(o.features)
                    if name not in own:
                        raise KeyError(f"offer {o.id!r} has no numeric field {name!r} "
                                       f"for objective {obj.text!r}")
                    col[i] = own[name]
            columns[name] = col
        return obj.scores(columns, len(offers)), preds

    def decide(self, request: DecideRequest,
               fields: Sequence[Mapping[str, float]] | None = None,
               adjust: Adjust | None = None) -> Decision:
        """Rank ``request.offers``: slot by slot, scores → exploration pmf over the
        offers ``adjust`` leaves in → times its weights → renormalised → one draw. The
        shown offers come first with the probability each was drawn with; the rest
        follow by their slot-1 probability (0 for an offer removed in slot 1). A slot
        where every offer is removed stays empty (``Decision.slots`` counts those
        shown)."""
        obj = self._objective  # one read: a swap mid-request cannot mix objectives
        offers = request.offers
        n = len(offers)
        rng = event_rng(request.event_id, self.seed)
        remaining = list(range(n))
        order: list[int] = []
        probs: list[float] = []
        first: dict[int, float] = {}
        first_scores: list[float] = []
        first_preds: dict[str, list[float]] = {}
        removed_first: list[str] = []
        first_ids: list[str] = []
        explored = False
        for k in range(min(request.slots, n)):
            weights = list(adjust(k, remaining, order)) if adjust is not None \
                else [1.0] * len(remaining)
            if len(weights) != len(remaining):
                raise ValueError("a constraint returned a weight count unlike the offers'")
            allowed = [j for j, w in enumerate(weights) if w > 0]
            if k == 0:
                removed_first = [offers[remaining[j]].id for j, w in enumerate(weights)
                                 if not w > 0]
            if not allowed:
                break
            cand = [remaining[j] for j in allowed]
            scores, preds, pmf = self._slot_pmf(request, k, cand,
                                                [weights[j] for j in allowed], fields, obj)
            a, p = _draw(pmf, request.explore, rng)
            if k == 0:
                first = dict(zip(cand, pmf, strict=True))
                first_scores = scores.tolist()
                first_preds = {h: v.tolist() for h, v in preds.items()}
                explored = request.explore and a != pmf.index(max(pmf))
                first_ids = [offers[i].id for i in cand]
            chosen = cand[a]
            remaining.remove(chosen)
            order.append(chosen)
            probs.append(p)
        shown = len(order)
        tail = sorted(remaining, key=lambda i: first.get(i, 0.0), reverse=True)
        order += tail
        probs += [first.get(i, 0.0) if request.explore else 0.0 for i in tail]
        info: dict[str, object] = {"path": "value", "objective": obj.text,
                                   "removed": removed_first}
        if first_scores:
            info["scores"] = dict(zip(first_ids, first_scores, strict=True))
            info["heads"] = {h: dict(zip(first_ids, v, strict=True))
                             for h, v in first_preds.items()}
        return Decision(request.event_id, tuple(order), tuple(probs), shown, self.version,
                        self.name, explored, info)

    def _slot_pmf(self, request: DecideRequest, k: int, cand: list[int],
                  weights: list[float], fields: Sequence[Mapping[str, float]] | None,
                  obj: Objective) -> tuple[Array, dict[str, Array], list[float]]:
        """Slot ``k``'s scores, head predictions and the pmf it draws from: exploration
        over the candidates' combined scores, times the constraints' weights (at most
        1), renormalised."""
        context = request.context if k == 0 else \
            {**request.context, SLOT_NAMESPACE: {f"k={k + 1}": 1.0}}
        offers = request.offers
        scores, preds = self.scores(
            context, [offers[i] for i in cand],
            [fields[i] for i in cand] if fields is not None else None, obj)
        pmf = self.exploration.pmf(scores.tolist(), self.heads.learned) \
            if request.explore else _epsilon_greedy(scores.tolist(), 0.0)
        w = [x * min(1.0, wt) for x, wt in zip(pmf, weights, strict=True)]
        total = sum(w)
        return scores, preds, [x / total for x in w] if total > 0 else pmf

    def learn(self, context: Namespaces, offers: Sequence[Offer], chosen: int,
              rewards: Mapping[str, float], probability: float) -> None:
        """Every head learns one logged decision (see :meth:`Heads.learn`)."""
        self.heads.learn(context, [o.line for o in offers], chosen, rewards, probability)
