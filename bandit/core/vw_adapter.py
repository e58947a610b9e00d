"""The one place that talks to Vowpal Wabbit.

It owns the text format (:mod:`bandit.core.vw_text`, via :mod:`bandit.core.features`), the VW
label (cost = −reward, the same sign as ``_label_cost`` in the joined DSJSON of
:mod:`bandit.core.codec`), ``finish_example`` and the cache of parsed offer examples.
Parsing text is most of VW's predict time, so each distinct offer line is parsed once
and kept (bounded LRU); a request parses only its shared context.

Examples parsed from a Workspace must go back to it through ``finish_example``:
dropping them leaks native memory, so evicted cache entries are finished and a
model is :meth:`close`-d when it is retired.

The adapter calls pylibvw's ``_parse``/``learn_multi``/``predict_multi`` directly:
pyvw's ``Example`` wrappers cost more than VW's own parsing and learning (measured:
~9k events/s through ``Workspace.learn`` against ~45k/s this way, 20 offers).

:class:`VWModel` is the workspace: it serves (:meth:`~VWModel.predict`), learns one
update (:meth:`~VWModel.learn`) and owns the standardisation, saving and closing. A
learner's joined DSJSON lines (:meth:`~VWModel.learn_dsjson`) are learned by its
:class:`bandit.core.vw_joined.JoinedLines`; one built with ``json_input=True`` reads them
with VW's own JSON parser (``--dsjson``) instead. Explanations read the weights
through :class:`bandit.core.vw_weights.WeightReader`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import vowpalwabbit
from vowpalwabbit import pyvw

from bandit.core.features import Namespaces
from bandit.core.scaling import Snapshot, Standardizer
from bandit.core.vw_joined import JOINED_OFFERS, JoinedLines, give_back
from bandit.core.vw_text import action_line, cost_label, parse_line, shared_line
from bandit.core.vw_weights import WeightReader

__all__ = ["LIST_CACHE", "OFFER_CACHE", "OfferCache", "VWModel", "action_line", "cost_label",
           "parse_line", "shared_line"]

_lib: Any = pyvw.pylibvw.vw

LIST_CACHE = 256  # offer lists remembered whole by a model
# A parsed VW example takes ~30 kB (measured), so these bound a model's memory: ~120 MB
# each when full. Past them a model parses more often; it never fails.
OFFER_CACHE = 4096  # offer lines kept parsed for predictions (least recently used go)


def _closed_text(line: str) -> str:
    raise RuntimeError("model is closed")


class OfferCache:
    """Parsed offer examples for predictions, by offer line (least recently used go,
    finished), and whole offer lists (a catalogue recurs; a list holds examples of the
    line cache only, and is dropped whenever one of those is evicted and finished).
    ``text``: an offer line as the model sees it. The caller holds the model's lock."""

    def __init__(self, ws: Any, text: Callable[[str], str], size: int = OFFER_CACHE) -> None:
        self._ws = ws
        self._text = text
        self._size = size
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lists: dict[tuple[str, ...], list[Any]] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def examples(self, offer_lines: Sequence[str]) -> list[Any]:
        """The parsed example of each offer line, in order (not to be finished)."""
        key = tuple(offer_lines)
        actions = self._lists.get(key)
        if actions is None:
            actions = [self._action(line) for line in offer_lines]
            if len(self._lists) >= LIST_CACHE:
                self._lists.clear()
            self._lists[key] = actions
        return actions

    def _action(self, line: str) -> Any:
        ex = self._cache.get(line)
        if ex is not None:
            self._cache.move_to_end(line)
            return ex
        ex = self._ws._parse(self._text(line))[0]
        self._cache[line] = ex
        if len(self._cache) > self._size:
            _, old = self._cache.popitem(last=False)
            self._lists.clear()  # a kept list may hold the example finished here
            _lib._finish_example_multi_ex(self._ws, [old])
        return ex

    def clear(self) -> None:
        """Give every example back to VW (together: one alone may crash VW)."""
        self._lists.clear()
        give_back(self._ws, list(self._cache.values()))
        self._cache.clear()

    def close(self) -> None:
        """Give every example back and let go of the model's callback (see
        :meth:`VWModel.close`)."""
        self.clear()
        self._text = _closed_text


class VWModel:
    """A VW ``--cb_explore_adf`` workspace with a cache of parsed offer examples.

    All methods are serialised by a lock, so one instance is safe to share between
    the threads of a worker.
    """

    def __init__(self, args: str, *, cache_size: int = OFFER_CACHE,
                 json_input: bool = False) -> None:
        self.args = args
        self.json_input = json_input
        self._ws = vowpalwabbit.Workspace(args + (" --dsjson" if json_input else ""))
        self._offers = OfferCache(self._ws, self._offer_text, cache_size)
        self._lock = threading.Lock()
        self._closed = False
        self._lines = JoinedLines(self._ws, self._learned)  # learning from joined lines
        self._weights = WeightReader(self._ws)
        # standardisation of numeric features (bandit.core.scaling): a served model
        # applies a fixed snapshot; a learning one keeps statistics and refreshes its
        # snapshot at each save (``saved_scale``: what that save is served with)
        self.scale = Snapshot()
        self.standardizer: Standardizer | None = None
        self.saved_scale: dict[str, Any] | None = None
        self._observed: set[str] = set()  # offer lines counted in this snapshot

    def standardize(self, standardizer: Standardizer) -> None:
        """Learn with running standardisation of numeric features."""
        with self._lock:
            self.standardizer = standardizer
            self._lines.forget_contexts()

    def set_scale(self, scale: Snapshot) -> None:
        """Serve (and learn) with this fixed standardisation snapshot."""
        with self._lock:
            self.scale = scale
            self._lines.forget_contexts()

    def _snapshot(self) -> Snapshot:
        std = self.standardizer
        return std.current if std is not None else self.scale

    def _served(self, context: Namespaces) -> Namespaces:
        snap = self._snapshot()
        return snap.apply(context) if snap else context

    def standardized(self, features: Namespaces) -> Namespaces:
        """Features (of a context or an offer) as this model sees them."""
        with self._lock:
            return self._served(features)

    def _learned(self, context: Namespaces) -> Namespaces:
        """Features to learn from; a standardising model counts them in its statistics
        first (offers: once each per snapshot, as the parsed ones are kept)."""
        if self.standardizer is not None:
            self.standardizer.observe(context)
        return self._served(context)

    def _offer_text(self, line: str) -> str:
        """An offer's line as this model sees it (numeric features standardised)."""
        snap = self._snapshot()
        return action_line(snap.apply(parse_line(line))) if snap else line

    def refresh_scale(self) -> None:
        """Freeze the statistics so far as the standardisation in use (a save does):
        ``saved_scale`` keeps the manifest entry of the model as it was."""
        with self._lock:
            self._refresh_scale()

    def _refresh_scale(self) -> None:
        std = self.standardizer
        if std is None:
            return
        before = std.refresh()
        self.saved_scale = std.state(before)
        if before.by_ns == std.current.by_ns:
            return  # (e.g. no numeric features at all): what is kept still holds
        # what was parsed or written with the old snapshot goes
        self._lines.forget_contexts()
        self._observed.clear()
        self._lines.forget()
        self._offers.clear()

    @classmethod
    def load(cls, path: str | Path, extra: str = "--quiet", *,
             json_input: bool = False) -> VWModel:
        return cls(f"-i {Path(path)} {extra}", json_input=json_input)

    # -- predicting -----------------------------------------------------------------
    def predict(self, context: Namespaces, offer_lines: Sequence[str]) -> list[float]:
        """Probability of each offer (in the given order) under the exploration policy."""
        if self.json_input:
            raise RuntimeError("a DSJSON learner workspace does not serve predictions")
        with self._lock:
            if self._closed:
                raise RuntimeError("model is closed")
            actions = self._offers.examples(offer_lines)
            shared = self._ws._parse(shared_line(self._served(context)))
            try:
                _lib.predict_multi(self._ws, shared + actions)
                pmf: list[float] = shared[0].get_action_scores()  # by offer position
            finally:
                _lib._finish_example_multi_ex(self._ws, shared)
        return pmf

    # -- learning -------------------------------------------------------------------
    def learn(self, context: Namespaces, offer_lines: Sequence[str], chosen: int,
              reward: float, probability: float) -> None:
        """One CB update: offer ``chosen`` (0-based) was shown with ``probability``."""
        with self._lock:
            lines = [shared_line(self._learned(context))]
            std = self.standardizer
            for line in offer_lines:
                if std is not None and line not in self._observed:
                    if len(self._observed) >= JOINED_OFFERS:
                        self._observed.clear()
                    self._observed.add(line)
                    std.observe(parse_line(line))
            offers = [self._offer_text(line) for line in offer_lines]
        for i, line in enumerate(offers):
            lines.append(f"{cost_label(reward, probability)} {line}" if i == chosen else line)
        self._learn_raw("\n".join(lines))

    def learn_dsjson(self, line: str | bytes) -> None:
        """Learn one joined DSJSON line (a decision with its CB label fields). Raises
        ValueError for a line that is not one; the model is unchanged then."""
        if self.json_input:
            self._learn_raw(line if isinstance(line, str) else line.decode())
            return
        b = line.encode() if isinstance(line, str) else line
        with self._lock:
            if self._closed:
                raise RuntimeError("model is closed")
            self._lines.learn(b)

    def _learn_raw(self, text: str) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("model is closed")
            examples = self._ws._parse(text)
            try:
                _lib.learn_multi(self._ws, examples)
            finally:
                _lib._finish_example_multi_ex(self._ws, examples)

    # -- persistence and lifecycle --------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Save the model; a standardising one then refreshes its snapshot and keeps, in
        ``saved_scale``, the manifest entry the saved file is served with."""
        with self._lock:
            self._ws.save(str(path))
            self._refresh_scale()

    def args_text(self) -> str:
        """The arguments the workspace runs with (those stored in a loaded model too)."""
        with self._lock:
            return self._weights.args_text()

    def weight(self, namespace: str, feature: str) -> float:
        """Learned weight of a single (non-interacted) feature, for explanations."""
        with self._lock:
            return self._weights.weight(namespace, feature)

    def interactions(self) -> list[tuple[str, ...]]:
        """The namespace initials the model crosses (see :class:`WeightReader`)."""
        with self._lock:
            return self._weights.interactions()

    def term_weights(self, terms: Sequence[tuple[tuple[str, str], ...]]) -> list[float]:
        """The weight of each term as the model's prediction uses it (see
        :meth:`WeightReader.term_weights`)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("model is closed")
            return self._weights.term_weights(terms)

    def close(self) -> None:
        """Return cached examples to VW and release the workspace."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # the collaborators drop their callbacks into this model: no reference
            # cycle is left, so the workspace (whose weights VW frees only when the
            # object is destroyed, not at finish) goes as soon as the model is dropped
            # rather than at some later full garbage collection
            self._offers.close()
            self._lines.close()
            self._ws.finish()
