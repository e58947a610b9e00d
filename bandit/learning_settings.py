"""Personalizer learning settings (VW arguments) ↔ this service's policy specs.

A Personalizer policy is ``{"name", "arguments"}`` with arguments such as
``--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::``. The
arguments that choose the exploration and the learning become a
:class:`~bandit.policy_spec.PolicySpec` (and so the VW command line the models are
built with); input-format arguments (``--dsjson``, ``--cb_explore_adf``…) and
interactions between namespace initials (``-q co -q cc``, ``--cubic cco``) become the
spec's ``interactions`` (``-q co`` alone is the default); wildcard interactions such as
Personalizer's ``-q ::`` are accepted and not applied (this service always crosses
context and offer namespaces); anything else is refused, naming the argument, rather
than silently dropped.
"""

from __future__ import annotations

from bandit.errors import BadRequest
from bandit.policy_spec import PolicySpec

# VW argument -> (spec key, takes a value)
_APPLIED: dict[str, tuple[str, bool]] = {
    "--epsilon": ("epsilon", True), "--bag": ("bag", True), "--first_only": ("first_only", False),
    "--squarecb": ("squarecb", False), "--gamma_scale": ("gamma", True),
    "--softmax": ("softmax", False), "--lambda": ("lambda", True),
    "--cb_type": ("cb_type", True), "-l": ("lr", True), "--learning_rate": ("lr", True),
    "--power_t": ("power_t", True), "--l2": ("l2", True), "-b": ("bits", True),
    "--bit_precision": ("bits", True), "--elim": ("elim", False),
}
# VW's update rule: all three by default; ``--adaptive --invariant`` alone is normalized=0
_UPDATE_FLAGS = {"--adaptive", "--invariant", "--normalized"}
_IGNORED_FLAGS = {"--cb_explore_adf", "--dsjson", "--json", "--quiet", "--cb_adf"}
_IGNORED_VALUED = {"--random_seed", "--hash"}
_INTERACTIONS = {"-q", "--quadratic", "--interactions", "--cubic"}


def _error(message: str) -> BadRequest:
    return BadRequest(message, field="arguments", code="InvalidPolicyConfiguration")


def _tokens(arguments: str) -> dict[str, str]:
    words = arguments.split()
    out: dict[str, str] = {}
    terms: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        name, eq, inline = w.partition("=")
        if name in _INTERACTIONS:
            value = inline if eq else (words[i + 1] if i + 1 < len(words) else "")
            if not value or value.startswith("-"):
                raise _error(f"{name} needs a value")
            if value.isascii() and value.isalpha():  # namespace initials, not wildcards
                terms.append(value.lower())
            i += 1 if eq else 2
            continue
        if name in _IGNORED_FLAGS:
            i += 1
            continue
        if name in _UPDATE_FLAGS:
            out[name] = "1"
            i += 1
            continue
        if name in _IGNORED_VALUED:
            i += 1 if eq else 2
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
    if terms and terms != ["co"]:
        out["interactions"] = "+".join(dict.fromkeys(terms))
    return out


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
                "first_only", "elim", "interactions"):
        if key in t and key != main:
            parts.append(f"{key}={t[key]}")
    update = {f for f in _UPDATE_FLAGS if f in t}
    if update == {"--adaptive", "--invariant"}:
        parts.append("normalized=0")
    elif update and update != _UPDATE_FLAGS:
        raise _error("VW's update flags: --adaptive --invariant (without normalisation), "
                     "or all three of --adaptive --invariant --normalized (the default)")
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
