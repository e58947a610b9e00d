"""The one place that talks to Vowpal Wabbit.

It owns the text format (via :mod:`bandit.features`), the label (reward → cost is
flipped here and nowhere else), ``finish_example`` and the cache of parsed offer
examples. Parsing text is most of VW's predict time, so each distinct offer line
is parsed once and kept (bounded LRU); a request parses only its shared context.

Examples parsed from a Workspace must go back to it through ``finish_example``:
dropping them leaks native memory, so evicted cache entries are finished and a
model is :meth:`close`-d when it is retired.

The adapter calls pylibvw's ``_parse``/``learn_multi``/``predict_multi`` directly:
pyvw's ``Example`` wrappers cost more than VW's own parsing and learning (measured:
~9k events/s through ``Workspace.learn`` against ~45k/s this way, 20 offers).

A learner built with ``json_input=True`` reads joined DSJSON lines with VW's own JSON
parser (``--dsjson``); the features hash exactly as the text format does, so the
model it saves is served by text-format servers unchanged.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import vowpalwabbit
from vowpalwabbit import pyvw

from bandit.features import Namespaces, render

_lib: Any = pyvw.pylibvw.vw


def cost_label(reward: float, probability: float) -> str:
    """The CB label of the chosen action: VW minimises cost, we maximise reward."""
    return f"0:{-reward!r}:{probability!r}"


def shared_line(context: Namespaces) -> str:
    return "shared " + render(context) if context else "shared |c"


def action_line(features: Namespaces) -> str:
    return render(features) if features else "|o"


LIST_CACHE = 256  # offer lists remembered whole by a model


class VWModel:
    """A VW ``--cb_explore_adf`` workspace with a cache of parsed offer examples.

    All methods are serialised by a lock, so one instance is safe to share between
    the threads of a worker.
    """

    def __init__(self, args: str, *, cache_size: int = 20000, json_input: bool = False) -> None:
        self.args = args
        self.json_input = json_input
        self._ws = vowpalwabbit.Workspace(args + (" --dsjson" if json_input else ""))
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        # whole offer lists (a catalogue recurs); holds examples of ``_cache`` only, and
        # is cleared whenever one of those is evicted and finished
        self._lists: dict[tuple[str, ...], list[Any]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def load(cls, path: str | Path, extra: str = "--quiet", *,
             json_input: bool = False) -> VWModel:
        return cls(f"-i {Path(path)} {extra}", json_input=json_input)

    # -- predicting -----------------------------------------------------------------
    def _action(self, line: str) -> Any:
        ex = self._cache.get(line)
        if ex is not None:
            self._cache.move_to_end(line)
            return ex
        ex = self._ws._parse(line)[0]
        self._cache[line] = ex
        if len(self._cache) > self._cache_size:
            _, old = self._cache.popitem(last=False)
            self._lists.clear()  # a cached list may hold the example finished here
            _lib._finish_example_multi_ex(self._ws, [old])
        return ex

    def predict(self, context: Namespaces, offer_lines: Sequence[str]) -> list[float]:
        """Probability of each offer (in the given order) under the exploration policy."""
        if self.json_input:
            raise RuntimeError("a DSJSON learner workspace does not serve predictions")
        with self._lock:
            if self._closed:
                raise RuntimeError("model is closed")
            key = tuple(offer_lines)
            actions = self._lists.get(key)
            if actions is None:
                actions = [self._action(line) for line in offer_lines]
                if len(self._lists) >= LIST_CACHE:
                    self._lists.clear()
                self._lists[key] = actions
            shared = self._ws._parse(shared_line(context))
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
        lines = [shared_line(context)]
        for i, line in enumerate(offer_lines):
            lines.append(f"{cost_label(reward, probability)} {line}" if i == chosen else line)
        self._learn_raw("\n".join(lines))

    def learn_dsjson(self, line: str | bytes) -> None:
        """Learn one joined DSJSON line (needs ``json_input=True``)."""
        if not self.json_input:
            raise RuntimeError("this workspace reads the text format, not DSJSON")
        self._learn_raw(line if isinstance(line, str) else line.decode())

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
        with self._lock:
            self._ws.save(str(path))

    def weight(self, namespace: str, feature: str) -> float:
        """Learned weight of a single (non-interacted) feature, for explanations."""
        with self._lock:
            return float(self._ws.get_weight_from_name(feature, namespace))

    def close(self) -> None:
        """Return cached examples to VW and release the workspace."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lists.clear()
            while self._cache:
                _, ex = self._cache.popitem()
                _lib._finish_example_multi_ex(self._ws, [ex])
            self._ws.finish()
