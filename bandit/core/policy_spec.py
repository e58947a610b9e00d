"""Policy specs: small immutable values that compile to Vowpal Wabbit arguments.

Grammar: ``KIND[:MAIN][,KEY=VALUE...]``, e.g. ``epsilon:0.05``, ``bag:5``,
``bag:5,epsilon=0.02``, ``squarecb:gamma=10``... (``squarecb,gamma=10`` also works),
``softmax:10`` (λ). Common keys for every kind: ``bits`` (hash bits, default 18),
``lr`` (learning rate), ``cb_type`` (``mtr``/``ips``/``dr``), ``l2``.
Optional keys, absent by default: ``interactions`` (``+``-separated namespace
initials, two letters for a quadratic and three for a cubic term, e.g. ``co+cc`` or
``co+cco``; replaces the default ``-q co``) and ``normalized=0`` (VW's adaptive and
invariant updates without its per-feature normalisation; ``1`` is VW's default).
``squarecb`` also takes ``elim=1``: SquareCB explores only the offers whose
confidence bound can still beat the best one's (VW's ``--elim``, RegCB-style).

Every spec is ``--cb_explore_adf`` with quadratic context×offer interactions
(context namespaces start with ``c``, offer namespaces with ``o``: ``-q co``) and
``--hash all`` so that the text format and VW's DSJSON reader hash identically.
"""

from __future__ import annotations

from dataclasses import dataclass

# kind -> (name of the MAIN value, its default, whether it is an int)
_KINDS: dict[str, tuple[str, float, bool]] = {
    "epsilon": ("epsilon", 0.05, False),
    "bag": ("bag", 5, True),
    "squarecb": ("gamma", 10.0, False),
    "softmax": ("lambda", 10.0, False),
}
_COMMON = {"bits", "lr", "cb_type", "l2", "epsilon", "first_only", "power_t",
           "interactions", "normalized"}
_ONLY = {"squarecb": {"elim"}}  # keys of one kind only
_CB_TYPES = ("mtr", "ips", "dr", "dm")


@dataclass(frozen=True)
class PolicySpec:
    """A contextual-bandit exploration algorithm and its parameters."""

    kind: str
    params: tuple[tuple[str, float | str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> PolicySpec:
        """Parse ``KIND[:MAIN][,KEY=VALUE...]``; raise ``ValueError`` naming the problem."""
        text = text.strip()
        if not text:
            raise ValueError("empty policy spec")
        head, *rest = text.split(",")
        kind, _, main = head.partition(":")
        kind = kind.strip().lower()
        if kind not in _KINDS:
            raise ValueError(f"unknown policy kind {kind!r}; expected one of "
                             f"{', '.join(sorted(_KINDS))}")
        main_name, main_default, main_int = _KINDS[kind]
        params: dict[str, float | str] = {main_name: main_default}
        items = list(rest)
        if main and "=" in main:
            items.insert(0, main)
        elif main:
            params[main_name] = _number(main_name, main, main_int)
        allowed = _COMMON | {main_name} | _ONLY.get(kind, set())
        for item in items:
            key, eq, value = item.partition("=")
            key = key.strip().lower()
            if not eq or key not in allowed:
                raise ValueError(f"bad parameter {item!r} for {kind}; allowed: "
                                 f"{', '.join(sorted(allowed))}")
            if key == "cb_type":
                if value not in _CB_TYPES:
                    raise ValueError(f"cb_type must be one of {', '.join(_CB_TYPES)}")
                params[key] = value
            elif key == "interactions":
                params[key] = _interactions(value)
            else:
                params[key] = _number(key, value,
                                      key in ("bag", "bits", "first_only", "normalized",
                                              "elim"))
        spec = cls(kind, tuple(sorted(params.items())))
        spec._check()
        return spec

    def _check(self) -> None:
        p = dict(self.params)
        eps = p.get("epsilon")
        if eps is not None and not 0.0 <= float(eps) <= 1.0:
            raise ValueError("epsilon must be in [0, 1]")
        if self.kind == "bag" and not 1 <= int(p["bag"]) <= 64:
            raise ValueError("bag must be between 1 and 64")
        bits = p.get("bits")
        if bits is not None and not 8 <= int(bits) <= 30:
            raise ValueError("bits must be between 8 and 30")
        for key in ("normalized", "elim"):
            if key in p and int(p[key]) not in (0, 1):
                raise ValueError(f"{key} must be 0 or 1")
        for key in ("gamma", "lambda", "lr"):
            if key in p and float(p[key]) <= 0:
                raise ValueError(f"{key} must be positive")
        if self.kind == "squarecb" and p.get("cb_type", "mtr") != "mtr":
            raise ValueError("squarecb learns with cb_type=mtr only (VW refuses the others)")

    def get(self, key: str, default: float | str | None = None) -> float | str | None:
        return dict(self.params).get(key, default)

    def vw_args(self, seed: int = 0) -> str:
        """The VW command line for a fresh model with this spec."""
        p = dict(self.params)
        args = ["--cb_explore_adf", *_interaction_args(p.get("interactions")), "--hash", "all",
                "--quiet", "--random_seed", str(seed), "-b", str(int(p.get("bits", 18)))]
        if "normalized" in p and not int(p["normalized"]):
            args += ["--adaptive", "--invariant"]
        if "cb_type" in p:
            args += ["--cb_type", str(p["cb_type"])]
        if "lr" in p:
            args += ["-l", _fmt(p["lr"])]
        if "power_t" in p:
            args += ["--power_t", _fmt(p["power_t"])]
        if "l2" in p:
            args += ["--l2", _fmt(p["l2"])]
        if self.kind == "epsilon":
            args += ["--epsilon", _fmt(p["epsilon"])]
        elif self.kind == "bag":
            args += ["--bag", str(int(p["bag"]))]
            if "epsilon" in p:
                args += ["--epsilon", _fmt(p["epsilon"])]
            if int(p.get("first_only", 0)):
                args += ["--first_only"]
        elif self.kind == "squarecb":
            args += ["--squarecb", "--gamma_scale", _fmt(p["gamma"])]
            if int(p.get("elim", 0)):
                args += ["--elim"]
        elif self.kind == "softmax":
            args += ["--softmax", "--lambda", _fmt(p["lambda"])]
        return " ".join(args)

    def __str__(self) -> str:
        main_name = _KINDS[self.kind][0]
        p = dict(self.params)
        rest = [f"{k}={_fmt(v)}" for k, v in self.params if k != main_name]
        return ",".join([f"{self.kind}:{_fmt(p[main_name])}", *rest])


def _interactions(raw: str) -> str:
    terms = raw.strip().lower().split("+")
    for t in terms:
        if not (2 <= len(t) <= 3 and t.isascii() and t.isalpha()):
            raise ValueError(f"interactions={raw!r}: each term is two (quadratic) or three "
                             "(cubic) namespace initials, joined by '+', e.g. co+cc")
    return "+".join(terms)


def _interaction_args(interactions: float | str | None) -> list[str]:
    if interactions is None:
        return ["-q", "co"]
    out: list[str] = []
    for t in str(interactions).split("+"):
        out += ["-q", t] if len(t) == 2 else ["--cubic", t]
    return out


def _number(key: str, raw: str, integer: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{key} must be finite")
    if integer:
        if value != int(value):
            raise ValueError(f"{key} must be an integer")
        return int(value)
    return value


def _fmt(v: float | str) -> str:
    if isinstance(v, str):
        return v
    return str(int(v)) if float(v).is_integer() else repr(float(v))
