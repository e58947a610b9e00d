"""Objective expressions: how the heads' predictions and an offer's fields make a score.

An objective is a small arithmetic expression such as ``click + 5 * conversion *
payout``, read from ``BANDIT_OBJECTIVE`` (or set at run time), over

* head names — each head's predicted reward for the offer in this context
  (``click``: P(click | x, a), ``conversion``: P(conversion | x, a), ...), and
* numeric offer fields (``payout``, ``margin``, ``offer.payout``, ...).

Grammar (usual precedence, left-associative; no function calls, no attribute access,
no ``eval``)::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := ("-" | "+") unary | atom
    atom   := NUMBER | NAME | "(" expr ")"
    NAME   := [A-Za-z_][A-Za-z0-9_]* ("." [A-Za-z_][A-Za-z0-9_]*)*

Semantics. The score of offer *a* in context *x* is the expression with every head
name *h* replaced by ĥ(x, a) and every field name *f* by the offer's value of *f*.
Division by zero gives 0 (``a / 0 = 0``; a denominator within ``TINY`` of zero counts as
zero, so a rounding residue such as ``click - click`` never blows a score up): an
objective never yields ±∞ or NaN, whose pmf would be undefined. Because the heads are
learned separately and combined only here, changing the objective changes the ranking
at once, with no relearning: for a linear objective ``Σ_k w_k · ĥ_k`` the greedy offer
is ``argmax_a Σ_k w_k ĥ_k(x, a)`` with the same ĥ_k.

An expression is parsed and checked once (:meth:`Objective.parse`, which raises a
``ValueError`` naming the offending token and its position) and compiled to two
evaluators that agree: :meth:`Objective.score` for one offer (plain floats, a few
hundred nanoseconds) and :meth:`Objective.scores` over numpy columns of all offers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
Value = Union[float, Array]  # noqa: UP007 - a runtime alias (python_requires 3.10)

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<op>[-+*/()])
    )""", re.VERBOSE)
MAX_LENGTH = 1000  # characters of an expression
MAX_DEPTH = 50  # nested parentheses and unary signs


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "name", "op" or "end"
    text: str
    pos: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    end = len(text.rstrip())
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            start = pos + len(text[pos:]) - len(text[pos:].lstrip())
            bad = re.match(r"\S+?(?=[\s()+\-*/]|$)", text[start:])
            word = bad.group(0) if bad else text[start]
            raise ValueError(f"objective {text!r}: unexpected {word!r} at position "
                             f"{start}; allowed: head names, numeric offer fields, "
                             f"numbers, + - * / and parentheses")
        kind = m.lastgroup or "op"
        out.append(_Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    out.append(_Token("end", "", end))
    return out


# An expression tree: a number, a name, or (op, left, right) / ("neg", operand).
Node = Union[float, str, tuple[str, "Node", "Node"], tuple[str, "Node"]]  # noqa: UP007


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.positions: dict[str, int] = {}  # each name's first position

    def error(self, tok: _Token, expected: str) -> ValueError:
        what = repr(tok.text) if tok.kind != "end" else "the end"
        return ValueError(f"objective {self.text!r}: unexpected {what} at position "
                          f"{tok.pos}; expected {expected}")

    def peek(self) -> _Token:
        return self.toks[self.i]

    def take(self) -> _Token:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(tok, "an operator (+ - * /) or the end")
        return node

    def expr(self, depth: int) -> Node:
        node = self.term(depth)
        while self.peek().text in ("+", "-") and self.peek().kind == "op":
            op = self.take().text
            node = (op, node, self.term(depth))
        return node

    def term(self, depth: int) -> Node:
        node = self.unary(depth)
        while self.peek().text in ("*", "/") and self.peek().kind == "op":
            op = self.take().text
            node = (op, node, self.unary(depth))
        return node

    def unary(self, depth: int) -> Node:
        tok = self.peek()
        if depth > MAX_DEPTH:
            raise ValueError(f"objective {self.text!r}: nested deeper than {MAX_DEPTH} "
                             f"at position {tok.pos}")
        if tok.kind == "op" and tok.text in ("-", "+"):
            self.take()
            inner = self.unary(depth + 1)
            return ("neg", inner) if tok.text == "-" else inner
        return self.atom(depth)

    def atom(self, depth: int) -> Node:
        tok = self.take()
        if tok.kind == "num":
            return float(tok.text)
        if tok.kind == "name":
            self.positions.setdefault(tok.text, tok.pos)
            return tok.text
        if tok.kind == "op" and tok.text == "(":
            node = self.expr(depth + 1)
            close = self.take()
            if close.text != ")" or close.kind != "op":
                raise self.error(close, "')'")
            return node
        raise self.error(tok, "a number, a name or '('")


def _names(node: Node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, tuple):
        return [n for child in node[1:] for n in _names(child)]
    return []


TINY = 1e-12  # a denominator this close to zero divides as zero


def _safe_div(a: float, b: float) -> float:
    return a / b if abs(b) > TINY else 0.0


def _compile(node: Node, div: Callable[[Any, Any], Any]) -> Callable[[Mapping[str, Any]], Any]:
    """One evaluator for ``node``: over floats (``div`` = :func:`_safe_div`) or arrays
    (``div`` = :func:`_vector_div`); the operators are the same for both."""
    if isinstance(node, float):
        c = node
        return lambda env: c
    if isinstance(node, str):
        name = node
        return lambda env: env[name]
    if node[0] == "neg":
        f = _compile(node[1], div)
        return lambda env: -f(env)
    op, left, right = node  # type: ignore[misc]
    a, b = _compile(left, div), _compile(right, div)
    if op == "+":
        return lambda env: a(env) + b(env)
    if op == "-":
        return lambda env: a(env) - b(env)
    if op == "*":
        return lambda env: a(env) * b(env)
    return lambda env: div(a(env), b(env))


def _compile_scalar(node: Node) -> Callable[[Mapping[str, float]], float]:
    return _compile(node, _safe_div)


def _vector_div(a: Value, b: Value) -> Value:
    num, den = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=np.abs(den) > TINY)
    return out


def _compile_vector(node: Node) -> Callable[[Mapping[str, Array]], Value]:
    return _compile(node, _vector_div)


def _render(node: Node, parent: int = 0) -> str:
    """Canonical text; parenthesised only where precedence needs it."""
    if isinstance(node, float):
        return str(int(node)) if node.is_integer() and abs(node) < 1e15 else repr(node)
    if isinstance(node, str):
        return node
    if node[0] == "neg":
        inner = _render(node[1], 3)
        return "-" + (f"({inner})" if inner.startswith("-") else inner)
    op, left, right = node  # type: ignore[misc]
    prec = 1 if op in "+-" else 2
    # the right operand of - and / binds tighter (a - (b - c) is not a - b - c)
    text = f"{_render(left, prec)} {op} {_render(right, prec + (op in '-/'))}"
    return f"({text})" if prec < parent else text


@dataclass(frozen=True)
class Objective:
    """A parsed, checked and compiled objective (immutable; cheap to swap at run time).

    ``heads``: the head names it uses; ``fields``: the offer fields it uses.
    """

    text: str
    heads: tuple[str, ...]
    fields: tuple[str, ...]
    _scalar: Callable[[Mapping[str, float]], float] = field(repr=False, compare=False)
    _vector: Callable[[Mapping[str, Array]], Value] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str, heads: Collection[str],
              fields: Collection[str] | None = None) -> Objective:
        """Parse ``text``; a name is a head if it is in ``heads``, else an offer field,
        which must be in ``fields`` when that is given. Raises ``ValueError`` naming the
        offending token (or name) and its position."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("objective is empty; e.g. 'click + 5 * conversion * payout'")
        if len(text) > MAX_LENGTH:
            raise ValueError(f"objective longer than {MAX_LENGTH} characters")
        parser = _Parser(text)
        node = parser.parse()
        used = list(dict.fromkeys(_names(node)))
        if fields is not None:
            unknown = [n for n in used if n not in heads and n not in fields]
            if unknown:
                pos = parser.positions[unknown[0]]
                raise ValueError(f"objective {text!r}: unknown name {unknown[0]!r} at "
                                 f"position {pos}; heads: {', '.join(sorted(heads))}; "
                                 f"offer fields: {', '.join(sorted(fields)) or 'none'}")
        return cls(_render(node), tuple(n for n in used if n in heads),
                   tuple(n for n in used if n not in heads),
                   _compile_scalar(node), _compile_vector(node))

    def score(self, values: Mapping[str, float]) -> float:
        """The score of one offer from its heads' predictions and fields (by name).
        Raises ``KeyError`` for a name missing from ``values``."""
        return float(self._scalar(values))

    def scores(self, columns: Mapping[str, Array], n: int) -> Array:
        """The scores of ``n`` offers from columns (one array of length ``n`` per name)."""
        out = self._vector(columns)
        return np.broadcast_to(np.asarray(out, dtype=np.float64), (n,)).copy()

    def __str__(self) -> str:
        return self.text
