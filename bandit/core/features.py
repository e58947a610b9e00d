"""JSON features → canonical Vowpal Wabbit namespaces, and their VW text.

Canonical form: ``{namespace: {feature: value}}`` where every name is already safe
for VW's text format and every value is a float. The same dict is written as the
``c`` object of DSJSON events, so ``vw --dsjson`` and our text format produce
exactly the same hashed features (``--hash all``).

Encoding rules (``name`` is the JSON key path inside a namespace, joined by ``.``):

* string ``"v"``        → categorical feature ``name=v`` with value 1
* number ``x``          → numeric feature ``name`` with value ``x`` (must be finite)
* bool                  → categorical ``name=true`` / ``name=false``
* list of strings       → a bag: ``name=v`` for every item
* list of numbers       → dense features ``name#0, name#1, …`` (embeddings)
* nested object         → top level: a namespace; deeper: flattened to ``a.b``
* ``null``              → ignored (a missing value)

Context namespaces get the prefix ``c`` and offer namespaces ``o`` (VW interacts
namespaces by their first letter, so ``-q co`` crosses every context namespace with
every offer namespace). Top-level scalar features land in the namespace ``c`` / ``o``.
The offer id is the feature ``id=<id>`` in namespace ``o_id``.

Escaping: ``%``, ``|``, ``:``, every whitespace character and a leading ``_`` are
percent-encoded (and the empty name is ``%_``), so no input can break a VW text
line or hide as a DSJSON keyword.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bandit.core.errors import BadRequest

Namespaces = dict[str, dict[str, float]]

CONTEXT_PREFIX = "c"
OFFER_PREFIX = "o"
ID_NAMESPACE = "o_id"

# VW stores values as float32: anything larger would become infinity inside the model,
# magnitudes below 1e-20 are flushed to zero here (VW's text parser reads some as zero).
MAX_VALUE = 3.0e38
MIN_VALUE = 1e-20

_UNSAFE = re.compile(r"[%|:\s]|^_")
# string features with these names are free text: hashed as a bag of lower-case words
TEXT_FEATURES = frozenset({"title", "text", "description"})
_WORDS = re.compile(r"\w+")
MAX_WORDS = 64


def is_text(name: str) -> bool:
    """A string feature whose last name part is ``title``, ``text`` or ``description``
    is free text (the same rule for ``{"item.title": ...}`` and ``{"item": {"title":
    ...}}``)."""
    return name.rsplit(".", 1)[-1] in TEXT_FEATURES


def finite(x: float) -> bool:
    """True for a value VW can hold (finite as a float32)."""
    return math.isfinite(x) and abs(x) <= MAX_VALUE


def _quote(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group(0).encode("utf-8"))


def escape(text: str) -> str:
    """Make ``text`` safe as a VW namespace or feature name (reversible).

    The empty string becomes ``%_``, which quoting never produces otherwise, so an
    empty feature name is still a feature VW can see.
    """
    if not text:
        return "%_"
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_quote, text)


_ESCAPED: dict[str, str] = {}
_ESCAPED_MAX = 100_000


def escape_cached(text: str) -> str:
    """:func:`escape` through a bounded cache: feature names and categorical values
    repeat across requests, and a dict lookup is cheaper than the regex."""
    out = _ESCAPED.get(text)
    if out is None:
        out = escape(text)
        if len(_ESCAPED) < _ESCAPED_MAX:
            _ESCAPED[text] = out
    return out


def offer_id_feature(offer_id: str) -> str:
    return "id=" + escape(offer_id)


@dataclass(frozen=True)
class Limits:
    """Size limits enforced while encoding (see :class:`bandit.config.settings.Settings`)."""

    max_features: int = 256
    max_name_bytes: int = 256
    max_depth: int = 4


class _Encoder:
    __slots__ = ("limits", "field", "count", "out")

    def __init__(self, limits: Limits, field: str) -> None:
        self.limits = limits
        self.field = field
        self.count = 0
        self.out: Namespaces = {}

    def ns(self, name: str) -> dict[str, float]:
        d = self.out.get(name)
        if d is None:
            d = self.out[name] = {}
        return d

    def add(self, ns: dict[str, float], name: str, value: Any, path: str, depth: int) -> None:
        if len(name.encode("utf-8")) > self.limits.max_name_bytes:
            raise BadRequest(f"feature name longer than {self.limits.max_name_bytes} bytes",
                             field=path)
        if value is None:
            return
        if isinstance(value, bool):
            self._put(ns, escape(name) + ("=true" if value else "=false"), 1.0, path)
        elif isinstance(value, str):
            if is_text(name):  # free text: a bag of words
                base = escape(name) + "="
                for word in _WORDS.findall(value.lower())[:MAX_WORDS]:
                    key = base + escape(word)
                    self._put(ns, key, ns.get(key, 0.0) + 1.0, path)
            else:
                self._put(ns, escape(name) + "=" + escape(value), 1.0, path)
        elif isinstance(value, (int, float)):
            x = float(value)
            if not finite(x):
                raise BadRequest("feature values must be finite numbers within ±3e38",
                                 field=path)
            self._put(ns, escape(name), x if abs(x) >= MIN_VALUE else 0.0, path)
        elif isinstance(value, list):
            self._list(ns, name, value, path)
        elif isinstance(value, dict):
            if depth >= self.limits.max_depth:
                raise BadRequest(f"features nested deeper than {self.limits.max_depth} levels",
                                 field=path)
            for k, v in value.items():
                self.add(ns, f"{name}.{k}" if name else k, v, f"{path}.{k}", depth + 1)
        else:
            raise BadRequest("feature values must be strings, numbers, booleans, lists "
                             "or objects", field=path)

    def _list(self, ns: dict[str, float], name: str, items: list[Any], path: str) -> None:
        if all(isinstance(v, str) for v in items):
            base = escape(name) + "="
            for v in items:
                self._put(ns, base + escape(v), 1.0, path)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            base = escape(name) + "#"
            for i, v in enumerate(items):
                x = float(v)
                if not finite(x):
                    raise BadRequest("feature values must be finite numbers within ±3e38",
                                     field=f"{path}[{i}]")
                self._put(ns, f"{base}{i}", x if abs(x) >= MIN_VALUE else 0.0, path)
        else:
            raise BadRequest("a feature list must hold only strings or only numbers",
                             field=path)

    def _put(self, ns: dict[str, float], feature: str, value: float, path: str) -> None:
        self.count += 1
        if self.count > self.limits.max_features:
            raise BadRequest(f"more than {self.limits.max_features} features", field=self.field)
        ns[feature] = value


def _fill_fast(enc: _Encoder, ns: dict[str, float], value: dict[str, Any], path: str) -> None:
    """A namespace's features, with a fast path for the common flat ones (one feature
    each, counted here); anything else takes the general rule of :meth:`_Encoder.add`."""
    limits = enc.limits
    quick = limits.max_name_bytes // 4  # a name this short is within the byte limit
    cached = _ESCAPED.get
    for k, v in value.items():
        tv = type(v)
        if tv is str and len(k) <= quick and not is_text(k):
            enc.count += 1
            ns[(cached(k) or escape_cached(k)) + "=" + (cached(v) or escape_cached(v))] = 1.0
        elif (tv is float or tv is int) and len(k) <= quick and -MAX_VALUE <= v <= MAX_VALUE:
            enc.count += 1
            ns[cached(k) or escape_cached(k)] = float(v) if abs(v) >= MIN_VALUE else 0.0
        else:
            enc.add(ns, k, v, f"{path}.{k}", 2)
    if enc.count > limits.max_features:
        raise BadRequest(f"more than {limits.max_features} features", field=enc.field)


def _fill_plain(enc: _Encoder, ns: dict[str, float], value: dict[str, Any], path: str) -> None:
    """A namespace's features, every one through the general rule (the plain twin)."""
    for k, v in value.items():
        enc.add(ns, k, v, f"{path}.{k}", 2)


def _encode(obj: Any, prefix: str, field: str, limits: Limits,
            fill: Callable[[_Encoder, dict[str, float], dict[str, Any], str], None]
            ) -> Namespaces:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise BadRequest("features must be a JSON object of namespaces", field=field)
    enc = _Encoder(limits, field)
    for key, value in obj.items():
        if not isinstance(key, str):  # pragma: no cover - JSON keys are strings
            raise BadRequest("feature names must be strings", field=field)
        path = f"{field}.{key}"
        if isinstance(value, dict):
            if len(key.encode("utf-8")) > limits.max_name_bytes:
                raise BadRequest(f"namespace name longer than {limits.max_name_bytes} bytes",
                                 field=path)
            fill(enc, enc.ns(prefix + escape(key)), value, path)
        else:
            enc.add(enc.ns(prefix), key, value, path, 1)
    return {k: v for k, v in enc.out.items() if v}


def encode(obj: Any, prefix: str, field: str, limits: Limits) -> Namespaces:
    """Encode a JSON features object into canonical namespaces.

    Top-level object values are namespaces; other top-level values are features of
    the default namespace ``prefix``. Raises :class:`BadRequest` naming ``field``.
    """
    return _encode(obj, prefix, field, limits, _fill_fast)


def encode_plain(obj: Any, prefix: str, field: str, limits: Limits) -> Namespaces:
    """:func:`encode` without its fast path for flat features: every value goes through
    the one general rule. The twin that :func:`encode` must agree with, byte for byte."""
    return _encode(obj, prefix, field, limits, _fill_plain)


def merge(*parts: Namespaces) -> Namespaces:
    """Union of namespace dicts; later parts win on the same feature."""
    out: Namespaces = {}
    for part in parts:
        for ns, feats in part.items():
            out.setdefault(ns, {}).update(feats)
    return out


def render(namespaces: Namespaces) -> str:
    """VW text for the namespaces, e.g. ``|cuser age:30 country=US |cdev os=ios``.

    A value of 1 is left out; others have 9 significant digits, which round-trip a
    float32 exactly (VW's own float parser mis-reads long mantissas with large
    exponents, e.g. 3.0292007304744154e-27 → 0)."""
    return " ".join(["|" + ns + " " + " ".join([k if v == 1.0 else f"{k}:{v:.9g}"
                                                for k, v in feats.items()])
                     for ns, feats in namespaces.items()])
