"""Learning joined DSJSON lines on a text-format VW workspace (the learner's side of
:class:`bandit.core.vw_adapter.VWModel`).

Each line is turned into the text the servers predict from. Each offer's parsed
example is kept (keyed by the offer's JSON bytes), and each context's shared line and
label's text (keyed by their JSON bytes), so a line parses only its context and the
chosen offer's labelled example, and decodes only what it has not seen: about 19 µs a
line against 23–27 µs for VW's JSON parser on 20 offers (same process, alternating).
The line is cut by :func:`bandit.core.codec.split_joined`; any other layout is decoded
whole and learned the same. The features hash the same as with VW's own JSON parser
(tested), so either model is served by text-format servers unchanged.

Examples parsed from a workspace go back to it through ``finish_example``
(:func:`give_back`); the caller holds the model's lock around every call here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from vowpalwabbit import pyvw

from bandit.core.codec import JoinedParts, split_joined
from bandit.core.features import Namespaces
from bandit.core.vw_text import action_line, fits_text, label_text, shared_line

_lib: Any = pyvw.pylibvw.vw

JOINED_OFFERS = 4096  # offers of joined lines kept parsed by a learning model
JOINED_CONTEXTS = 65536  # contexts of joined lines kept as shared lines (~400 B each)
JOINED_LABELS = 4096  # label fields of joined lines kept as VW text labels


def _closed(*_: Any) -> Any:
    raise RuntimeError("model is closed")


def give_back(ws: Any, actions: list[Any]) -> None:
    """Finish parsed offer examples as VW expects a list it predicted: a shared example
    first, one predict (finishing one alone after a learn crashes VW)."""
    if actions:
        shared = ws._parse("shared |c")
        _lib.predict_multi(ws, shared + actions)
        _lib._finish_example_multi_ex(ws, shared + actions)


def once_each(ws: Any, keys: list[bytes], hits: list[tuple[str, Any]]
              ) -> tuple[list[tuple[str, Any]], list[Any]]:
    """The offers (text, parsed example) with a repeated one parsed afresh: one example
    twice in a list corrupts VW's memory (bagging) or its update. Also returns the
    fresh ones, to give back after the update."""
    if len(set(keys)) == len(keys):
        return hits, []
    seen: set[bytes] = set()
    out, fresh = [], []
    for key, hit in zip(keys, hits, strict=True):
        if key in seen:
            ex = ws._parse(hit[0])[0]
            fresh.append(ex)
            hit = (hit[0], ex)
        seen.add(key)
        out.append(hit)
    return out, fresh


class LabelTexts:
    """The VW text label and chosen index of joined lines, kept by the label fields'
    JSON (the few distinct labels recur: rewards, probabilities, chosen positions)."""

    def __init__(self) -> None:
        self._texts: dict[bytes, tuple[str, int]] = {}

    def __len__(self) -> int:
        return len(self._texts)

    def text(self, line: bytes, parts: JoinedParts) -> tuple[str, int] | None:
        """The chosen offer's VW text label and index (not checked against the number
        of offers); None if the fields before ``c`` are not JSON. Raises ValueError for
        label fields that are not one. The label fields opening the line (as the
        learner writes them) are decoded once per distinct text."""
        if parts.label:
            hit = self._texts.get(parts.label)
            if hit is not None:
                return hit
            try:
                label = orjson.loads(parts.label + b"}")
            except orjson.JSONDecodeError:
                label = None
            if type(label) is dict and "_label_probability" in label:
                out = label_text(label)
                if len(self._texts) >= JOINED_LABELS:
                    self._texts.clear()
                self._texts[parts.label] = out
                return out
        try:
            return label_text(orjson.loads(line[:parts.c] + b"}"))
        except orjson.JSONDecodeError:
            return None


class JoinedLines:
    """Learns joined lines on ``ws``; ``learned`` gives the features of a context or
    offer as the model learns them (standardised, and counted by a standardising
    model)."""

    def __init__(self, ws: Any, learned: Callable[[Namespaces], Namespaces]) -> None:
        self._ws = ws
        self._learned = learned
        self._joined: dict[bytes, Any] = {}  # offer JSON bytes → its parsed example
        self._texts: dict[bytes, str] = {}  # offer JSON bytes → its text
        self._contexts: dict[bytes, str] = {}  # a context's JSON → its shared line
        self._labels = LabelTexts()
        self._names: set[str] = set()
        self._reset: list[Any] | None = None

    def learn(self, line: bytes) -> None:
        """Learn one joined line. Raises ValueError for a line that is not one; the
        model is unchanged then."""
        if not self._learn_layout(line):
            self._learn_decoded(line)

    def forget_contexts(self) -> None:
        """Drop the shared lines kept (written with a standardisation no longer in use)."""
        self._contexts.clear()

    def forget(self) -> None:
        """Give the kept offer examples back to VW. They took part in learning, so
        they go back as VW expects a list it predicted."""
        if not self._joined:
            return
        actions = list(self._joined.values())
        self._joined.clear()
        self._texts.clear()
        give_back(self._ws, actions)

    def close(self) -> None:
        """Give every example back and let go of the model's callback: a closed model
        must not stay in a reference cycle, or its workspace (whose weights VW frees
        only when the object is destroyed) lives until a full garbage collection."""
        self.forget()
        if self._reset is not None:
            _lib._finish_example_multi_ex(self._ws, self._reset)
            self._reset = None
        self._learned = _closed

    def _learn_layout(self, line: bytes) -> bool:
        """The common layout (the label fields, then ``c`` last with ``_multi`` last in
        it), without decoding the offers; False for anything else. An offer's bytes are
        decoded and checked the first time they are seen; contexts and labels recur
        too: each distinct one is decoded, checked and written as text once."""
        parts = split_joined(line)
        if parts is None:
            return False
        shared = self._shared_text(parts.context)
        if shared is None:
            return False
        segments = parts.offers
        actions = self._offer_examples(segments)
        if actions is None:
            return False
        label = self._labels.text(line, parts)
        if label is None:
            return False
        text, idx = label
        if idx >= len(actions):
            raise ValueError(f"label index {idx!r} out of range")
        if len(set(segments)) == len(segments):
            self._learn_examples(text, idx, shared, self._texts[segments[idx]], actions, [])
        else:
            hits, fresh = once_each(self._ws, segments, [(self._texts[s], self._joined[s])
                                                     for s in segments])
            self._learn_examples(text, idx, shared, hits[idx][0], [h[1] for h in hits], fresh)
        return True

    def _offer_examples(self, segments: list[bytes]) -> list[Any] | None:
        """The kept parsed example of each offer, parsing (and keeping) the new ones;
        None if one is not an offer VW's text format can hold."""
        if len(self._joined) + len(segments) > JOINED_OFFERS:
            self.forget()
        get = self._joined.get
        actions = [get(seg) for seg in segments]
        if None not in actions:
            return actions
        for i, seg in enumerate(segments):
            if actions[i] is None:
                ex = get(seg)  # (kept a moment ago if this offer is listed twice)
                if ex is None:
                    try:
                        offer = orjson.loads(b"{" + seg + b"}}")
                    except orjson.JSONDecodeError:
                        return None
                    if not fits_text(offer, self._names):
                        return None
                    ex = self._keep(seg, action_line(self._learned(offer)))[1]
                actions[i] = ex
        return actions

    def _shared_text(self, ctx: bytes) -> str | None:
        """The shared line of a joined line's context (its JSON without the closing
        brace; ``b""``: none), kept for the next line with the same context; None if it
        is not one."""
        if not ctx:
            return "shared |c"
        text = self._contexts.get(ctx)
        if text is not None:
            return text
        try:
            obj = orjson.loads(ctx + b"}")
        except orjson.JSONDecodeError:
            return None
        if not fits_text(obj, self._names):
            return None
        if len(self._contexts) >= JOINED_CONTEXTS:
            self._contexts.clear()
        text = self._contexts[ctx] = shared_line(self._learned(obj))
        return text

    def _learn_decoded(self, line: bytes) -> None:
        """Any other layout: decoded whole; its offers are the kept examples too (so
        the model is the same whatever the layout), but for empty ones."""
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        c: Any = obj.get("c") if type(obj) is dict else None
        multi = c.get("_multi") if type(c) is dict else None
        if type(multi) is not list or not multi:
            raise ValueError("c._multi must be a non-empty list")
        ctx = {k: v for k, v in c.items() if k != "_multi"}
        if not fits_text(ctx, self._names) or \
                not all(fits_text(o, self._names) for o in multi):
            raise ValueError("context and offers must map namespaces to numeric features "
                             "within ±3e38, with names that fit VW's text format")
        text, idx = label_text(obj)
        if idx >= len(multi):
            raise ValueError(f"label index {idx!r} out of range")
        if len(self._joined) + len(multi) > JOINED_OFFERS:
            self.forget()
        hits: list[tuple[str, Any]] = []
        keys: list[bytes] = []
        fresh: list[Any] = []
        for o in multi:
            key = orjson.dumps(o)
            if key[:2] == b'{"' and key[-2:] == b"}}":  # what the common layout would see
                seg = key[1:-2]
                hits.append((self._texts[seg], self._joined[seg]) if seg in self._joined
                            else self._keep(seg, action_line(self._learned(o))))
            else:  # an empty offer: parsed for this line only
                ex = self._ws._parse(action_line(o))[0]
                fresh.append(ex)
                hits.append((action_line(o), ex))
            keys.append(key)
        hits, again = once_each(self._ws, keys, hits)
        self._learn_examples(text, idx, shared_line(self._learned(ctx)), hits[idx][0],
                             [h[1] for h in hits], fresh + again)

    def _keep(self, segment: bytes, text: str) -> tuple[str, Any]:
        """Parse an offer of joined lines and keep it under its JSON bytes."""
        ex = self._joined[segment] = self._ws._parse(text)[0]
        self._texts[segment] = text
        return text, ex

    def _learn_examples(self, label: str, idx: int, shared: str, chosen_text: str,
                        actions: list[Any], fresh: list[Any]) -> None:
        """One CB update from the context's shared line, the offers' parsed examples
        and the chosen one's text and label (its entry of ``actions`` is replaced): only
        the context and the labelled chosen offer are parsed; ``fresh``: examples parsed
        for this update only, to give back."""
        ws = self._ws
        shared_ex = ws._parse(shared)
        chosen = ws._parse(label + " " + chosen_text)
        actions[idx] = chosen[0]
        try:
            _lib.learn_multi(ws, shared_ex + actions)
        finally:
            # VW's finish reads the label the last learn saw across the whole list;
            # predicting an unlabelled pair first makes it read none, so only this
            # update's own examples go back to VW and the kept ones stay parsed
            if self._reset is None:
                self._reset = ws._parse("shared |c x\n|o x")
            _lib.predict_multi(ws, self._reset)
            _lib._finish_example_multi_ex(ws, shared_ex + chosen + fresh)
