"""The candidate policy specs ``bandit-replay optimize`` evaluates.

A grid is a list of :class:`Candidate` values: a parsed :class:`~bandit.core.policy_spec.
PolicySpec` and where it came from (``default``, ``grid.txt:3``, ``--grid item 2``).
The default grid varies the current spec one setting at a time (exploration algorithm
and its parameter, learning rate, interactions, normalisation, ``cb_type``) and adds a
few combinations of the settings that most often help together. ``--grid`` takes a
file (one spec per line, ``#`` comments) or specs inline, separated by ``;`` (a spec
has commas of its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bandit.core.policy_spec import _KINDS, PolicySpec

# one setting at a time around the current spec
EXPLORATION: tuple[tuple[str, float], ...] = (
    ("epsilon", 0.02), ("epsilon", 0.05), ("epsilon", 0.1), ("epsilon", 0.2),
    ("bag", 5), ("squarecb", 10.0), ("squarecb", 100.0), ("softmax", 10.0))
LEARNING_RATES = (0.1, 0.5, 1.0, 2.0)
INTERACTIONS = ("co", "co+cc", "co+oo", "co+cc+oo")
CB_TYPES = ("mtr", "ips", "dr")
NORMALIZED = (0, 1)
# VW's own defaults: a spec that sets one of these says nothing a spec without it does not
VW_DEFAULTS: dict[str, float | str] = {"lr": 0.5, "cb_type": "mtr", "normalized": 1,
                                       "interactions": "co"}


@dataclass(frozen=True)
class Candidate:
    """A spec to evaluate and where it was given (for error messages and the report)."""

    spec: PolicySpec
    origin: str = "default"

    @property
    def name(self) -> str:
        return str(self.spec)


def vary(spec: PolicySpec, kind: str | None = None, main: float | None = None,
         **params: float | str | None) -> PolicySpec:
    """``spec`` with its exploration algorithm (``kind`` and its ``main`` value) and any
    common parameters replaced; a parameter given as ``None`` is removed. Changing the
    algorithm drops the old one's own parameters (an ``epsilon`` beside ``bag``)."""
    p = dict(spec.params)
    new_kind = kind or spec.kind
    if new_kind != spec.kind:
        p.pop(_KINDS[spec.kind][0], None)
        p.pop("epsilon", None)
        p.pop("first_only", None)
        p.pop("elim", None)  # SquareCB's own
        if new_kind == "squarecb":
            p.pop("cb_type", None)  # SquareCB learns with mtr only
    main_name, main_default, main_int = _KINDS[new_kind]
    value = main if main is not None else p.get(main_name, main_default)
    p[main_name] = int(value) if main_int else float(value)
    for key, v in params.items():
        if v is None or (key in VW_DEFAULTS and v == VW_DEFAULTS[key]):
            p.pop(key, None)
        else:
            p[key] = v
    out = PolicySpec(new_kind, tuple(sorted(p.items())))
    return PolicySpec.parse(str(out))  # validated, in canonical form


def dedupe(candidates: Iterable[Candidate]) -> list[Candidate]:
    """The first of each spec (a repeat would only widen every corrected interval)."""
    seen: set[str] = set()
    out = []
    for c in candidates:
        if c.name not in seen:
            seen.add(c.name)
            out.append(c)
    return out


def default_grid(current: PolicySpec | str) -> list[Candidate]:
    """The current spec first, then one change at a time, then a few combinations."""
    base = PolicySpec.parse(current) if isinstance(current, str) else current
    specs: list[PolicySpec] = [base]
    specs += [vary(base, kind, main) for kind, main in EXPLORATION]
    specs += [vary(base, lr=lr) for lr in LEARNING_RATES]
    specs += [vary(base, interactions=i) for i in INTERACTIONS]
    if base.kind != "squarecb":  # SquareCB learns with mtr only
        specs += [vary(base, cb_type=t) for t in CB_TYPES]
    specs += [vary(base, normalized=n) for n in NORMALIZED]
    richer = vary(base, interactions="co+cc+oo")
    specs += [vary(richer, lr=lr) for lr in (1.0, 2.0)]
    specs += [vary(richer, kind, main) for kind, main in (("squarecb", 10.0), ("bag", 5))]
    specs += [vary(base, normalized=0, lr=lr) for lr in (0.1, 1.0)]
    return dedupe(Candidate(s, "default" if s != base else "current") for s in specs)


def _parse(text: str, where: str) -> Candidate:
    try:
        return Candidate(PolicySpec.parse(text), where)
    except ValueError as exc:
        raise ValueError(f"{where}: bad spec {text.strip()!r}: {exc}") from None


def parse_grid(items: Sequence[str]) -> list[Candidate]:
    """Candidates from ``--grid`` values: each is a file of specs (one a line) or specs
    inline, separated by ``;``. Raises ``ValueError`` naming the file and line (or the
    inline item) and the bad parameter."""
    out: list[Candidate] = []
    for item in items:
        path = Path(item)
        if "," not in item and ":" not in item and ";" not in item and not path.exists() \
                and item.strip().lower() not in _KINDS:
            raise ValueError(f"{item}: no such grid file (or give specs inline, "
                             "separated by ';')")
        if path.is_file():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{path}: cannot read the grid: {exc}") from None
            for lineno, line in enumerate(lines, 1):
                text = line.split("#", 1)[0].strip()
                if text:
                    out.append(_parse(text, f"{path}:{lineno}"))
            continue
        for k, text in enumerate(item.split(";"), 1):
            if text.strip():
                out.append(_parse(text, f"--grid item {k}"))
    if items and not out:
        raise ValueError(f"{', '.join(items)}: the grid lists no spec")
    return dedupe(out)


def grid(current: PolicySpec | str, items: Sequence[str] = ()) -> list[Candidate]:
    """The candidates to evaluate: ``--grid`` items if given, else the default grid;
    the current spec is always among them (it is what a winner has to beat)."""
    base = PolicySpec.parse(current) if isinstance(current, str) else current
    if not items:
        return default_grid(base)
    given = parse_grid(items)
    if all(c.spec != base for c in given):
        given.insert(0, Candidate(base, "current"))
    return [Candidate(c.spec, "current") if c.spec == base else c for c in given]
