"""Personalizer learning settings (VW arguments) ↔ this service's policy specs.

A Personalizer policy is ``{"name", "arguments"}`` with arguments such as
``--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::``. The
arguments that choose the exploration and the learning become a
:class:`~bandit.core.policy_spec.PolicySpec` (and so the VW command line the models are
built with). Input-format arguments (``--dsjson``, ``--cb_explore_adf``,
``--hash all``…) are accepted and not applied. Interactions (``-q``, ``--quadratic``,
``--cubic``) among this service's namespaces (context ``c…``, offer ``o…``: ``-q co``,
``-q cc``, ``--cubic cco``) become the spec's ``interactions``; others (``-q ::``, or
namespaces of another feature layout) are accepted and not applied. ``--adaptive
--invariant`` is ``normalized=0``. Anything else is refused, naming the argument,
rather than silently dropped.
"""

from __future__ import annotations

from bandit.core.errors import BadRequest
from bandit.core.policy_spec import PolicySpec

# VW argument -> (spec key, takes a value)
_APPLIED: dict[str, tuple[str, bool]] = {
    "--epsilon": ("epsilon", True), "--bag": ("bag", True), "--first_only": ("first_only", False),
    "--squarecb": ("squarecb", False), "--gamma_scale": ("gamma", True),
    "--softmax": ("softmax", False), "--lambda": ("lambda", True),
    "--cb_type": ("cb_type", True), "-l": ("lr", True), "--learning_rate": ("lr", True),
    "--power_t": ("power_t", True), "--l2": ("l2", True), "-b": ("bits", True),
    "--bit_precision": ("bits", True), "--elim": ("elim", False),
}
_IGNORED_FLAGS = {"--cb_explore_adf", "--dsjson", "--json", "--quiet", "--cb_adf"}
_IGNORED_VALUED = {"--random_seed"}
_INTERACTIONS = {"-q": 2, "--quadratic": 2, "--interactions": 0, "--cubic": 3}
_NORMALISATION = ("--adaptive", "--invariant")  # both without --normalized: normalized=0


def _error(message: str) -> BadRequest:
    return BadRequest(message, field="arguments", code="InvalidPolicyConfiguration")


def _tokens(arguments: str) -> dict[str, str]:
    words = arguments.split()
    out: dict[str, str] = {}
    terms: list[str] = []
    flags: set[str] = set()
    i = 0
    while i < len(words):
        w = words[i]
        name, eq, inline = w.partition("=")
        if name in _IGNORED_FLAGS:
            i += 1
            continue
        if name in _IGNORED_VALUED or name == "--hash" or name in _INTERACTIONS:
            value = inline if eq else (words[i + 1] if i + 1 < len(words) else "")
            if not value or value.startswith("--"):
                raise _error(f"{name} needs a value")
            if name == "--hash" and value != "all":
                raise _error("--hash must be all: the service hashes every feature as a "
                             "string, as VW's DSJSON reader does")
            if name in _INTERACTIONS:
                terms.append(value)
            i += 1 if eq else 2
            continue
        if name in _NORMALISATION or name == "--normalized":
            flags.add(name)
            i += 1
            continue
        if name not in _APPLIED:
            raise _error(f"unsupported learning-settings argument {w!r}; supported: "
                         f"{', '.join(sorted(_APPLIED))} (and, not applied: "
                         f"{', '.join(sorted(_IGNORED_FLAGS | _IGNORED_VALUED))})")
        key, valued = _APPLIED[name]
        if valued:
            value = inline if eq else (words[i + 1] if i + 1 < len(words) else "")
            if not value or value.startswith("--"):
                raise _error(f"{name} needs a value")
            out[key] = value
            i += 1 if eq else 2
        else:
            out[key] = "1"
            i += 1
    if flags and flags != {*_NORMALISATION, "--normalized"}:  # all three: VW's default
        if flags != set(_NORMALISATION):
            raise _error("--adaptive and --invariant go together (VW's updates without "
                         "its normalisation: normalized=0), or all three with --normalized "
                         "(the default)")
        out["normalized"] = "0"
    applied = _applied_interactions(terms)
    if applied is not None:
        out["interactions"] = applied
    return out


def _applied_interactions(terms: list[str]) -> str | None:
    """The interactions among this service's namespaces (context ``c…``, offer ``o…``)
    as a spec's ``interactions`` (None: the default ``-q co``). Terms naming other
    namespaces (``-q ::``, ``-q ua`` of another feature layout) cross nothing here and
    are not applied."""
    mine = [t.lower() for t in terms if 2 <= len(t) <= 3 and set(t.lower()) <= {"c", "o"}]
    if not mine or mine == ["co"]:
        return None
    return "+".join(dict.fromkeys(mine))


def spec_from_arguments(arguments: str) -> PolicySpec:
    """The policy spec VW ``arguments`` describe; raises :class:`BadRequest`."""
    if not isinstance(arguments, str) or not arguments.strip():
        raise _error("arguments must be a non-empty string of VW arguments")
    t = _tokens(arguments)
    kinds = [k for k in ("bag", "squarecb", "softmax") if k in t]
    if len(kinds) > 1:
        raise _error(f"choose one exploration algorithm, not {' and '.join(kinds)}")
    kind = kinds[0] if kinds else "epsilon"
    main = {"bag": "bag", "squarecb": "gamma", "softmax": "lambda", "epsilon": "epsilon"}[kind]
    parts = [kind + (f":{t[main]}" if main in t else "")]
    for key in ("epsilon", "gamma", "lambda", "cb_type", "lr", "power_t", "l2", "bits",
                "first_only", "elim", "interactions", "normalized"):
        if key in t and key != main and not (key == "bits" and t[key] == "18"):
            parts.append(f"{key}={t[key]}")  # (18 bits: the default, left out)
    try:
        return PolicySpec.parse(",".join(parts))
    except ValueError as exc:
        raise _error(f"invalid learning settings: {exc}") from None


def arguments_of(spec: PolicySpec) -> str:
    """The VW arguments a model of ``spec`` is trained with, as Personalizer shows them
    (no seed, no ``--quiet``)."""
    words = spec.vw_args().split()
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] == "--quiet":
            i += 1
        elif words[i] == "--random_seed":
            i += 2
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)
