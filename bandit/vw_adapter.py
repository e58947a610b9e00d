"""The one place that talks to Vowpal Wabbit.

It owns the text format (via :mod:`bandit.features`), the VW label (cost = −reward,
the same sign as ``_label_cost`` in the joined DSJSON written by :mod:`bandit.events`
and the learner), ``finish_example`` and the cache of parsed offer
examples. Parsing text is most of VW's predict time, so each distinct offer line
is parsed once and kept (bounded LRU); a request parses only its shared context.

Examples parsed from a Workspace must go back to it through ``finish_example``:
dropping them leaks native memory, so evicted cache entries are finished and a
model is :meth:`close`-d when it is retired.

The adapter calls pylibvw's ``_parse``/``learn_multi``/``predict_multi`` directly:
pyvw's ``Example`` wrappers cost more than VW's own parsing and learning (measured:
~9k events/s through ``Workspace.learn`` against ~45k/s this way, 20 offers).

A learner reads joined DSJSON lines (:meth:`VWModel.learn_dsjson`). A text-format model
turns each line into the text the servers predict from, and keeps each offer's parsed
example (keyed by the offer's JSON bytes) and each context's shared line and label's
text (keyed by their JSON bytes), so a line parses only its context and the chosen
offer's labelled example, and decodes only what it has not seen: about 19 µs a line
against 23–27 µs for VW's JSON parser on 20 offers (same process, alternating). One
built with ``json_input=True`` reads the lines with VW's own JSON parser (``--dsjson``).
The features hash the same both ways (tested), so either model is served by text-format
servers unchanged.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import vowpalwabbit
from vowpalwabbit import pyvw

from bandit.features import MAX_VALUE, Namespaces, render
from bandit.scaling import Snapshot, Standardizer

_lib: Any = pyvw.pylibvw.vw
_FNV_PRIME = 16777619  # VW's quadratic-interaction hash multiplier
_U64 = (1 << 64) - 1


def cost_label(reward: float, probability: float) -> str:
    """The CB label of the chosen action: VW minimises cost, we maximise reward."""
    return f"0:{-reward!r}:{probability!r}"


def shared_line(context: Namespaces) -> str:
    return "shared " + render(context) if context else "shared |c"


def action_line(features: Namespaces) -> str:
    return render(features) if features else "|o"


def parse_line(line: str) -> Namespaces:
    """The namespaces of a line :func:`~bandit.features.render` wrote (names are
    escaped: a space, ``|`` or ``:`` in one is never part of it)."""
    out: Namespaces = {}
    for part in line.split("|")[1:]:
        words = part.split()
        if not words:
            continue
        feats = out.setdefault(words[0], {})
        for w in words[1:]:
            name, colon, value = w.rpartition(":")
            if colon:
                feats[name] = float(value)
            else:
                feats[w] = 1.0
    return out


LIST_CACHE = 256  # offer lists remembered whole by a model
# A parsed VW example takes ~30 kB (measured), so these bound a model's memory: ~120 MB
# each when full. Past them a model parses more often; it never fails.
OFFER_CACHE = 4096  # offer lines kept parsed for predictions (least recently used go)
JOINED_OFFERS = 4096  # offers of joined lines kept parsed by a learning model
JOINED_CONTEXTS = 65536  # contexts of joined lines kept as shared lines (~400 B each)
JOINED_LABELS = 4096  # label fields of joined lines kept as VW text labels

# what would break VW's text format (or, for a leading underscore, mean something else
# to its JSON reader) in a namespace or feature name of a joined line
_UNSAFE_NAME = re.compile(r"[|:\s]|^_")


def _fits_text(obj: Any, known: set[str]) -> bool:
    """Whether a joined line's context or offer is namespace → feature → number, with
    names that survive VW's text format (then :func:`shared_line` and
    :func:`action_line` write it as the servers do). ``known``: names already checked
    (added to)."""
    if type(obj) is not dict:
        return False
    for ns, feats in obj.items():
        if type(feats) is not dict or (ns not in known and not _safe_name(ns, known)):
            return False
        for name, v in feats.items():
            t = type(v)
            if (t is not float and t is not int) or not -MAX_VALUE <= v <= MAX_VALUE or \
                    (name not in known and not _safe_name(name, known)):
                return False  # (a value past float32's range would make VW's weights NaN)
    return True


def _safe_name(name: Any, known: set[str]) -> bool:
    if type(name) is not str or not name or _UNSAFE_NAME.search(name):
        return False
    if len(known) < 100_000:
        known.add(name)
    return True


def _label_end(line: bytes, c: int) -> int:
    """Where the label fields end when they open the line, as the learner writes them
    (``{"_label_cost":…,"_labelIndex":N``, before ``c`` at ``c``); else -1."""
    if not line.startswith(b'{"_label_cost":'):
        return -1
    i = line.find(b'"_labelIndex":', 0, c)
    return line.find(b",", i + 14, c) if i > 0 else -1


def _cb_label(label: Any) -> tuple[str, int]:
    """The chosen offer's VW text label and index from a joined line's label fields
    (the index is not checked against the number of offers here)."""
    if type(label) is not dict:
        raise ValueError("a joined line must be a JSON object")
    cost: Any = label.get("_label_cost")
    prob: Any = label.get("_label_probability")
    idx: Any = label.get("_labelIndex")
    if type(cost) not in (int, float) or type(prob) not in (int, float) or \
            type(idx) is not int:
        raise ValueError("a joined line needs _label_cost, _label_probability and _labelIndex")
    if not 0 < prob <= 1 or idx < 0:
        raise ValueError(f"label probability {prob!r} or index {idx!r} out of range")
    return f"0:{float(cost)!r}:{float(prob)!r}", idx


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
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        # whole offer lists (a catalogue recurs); holds examples of ``_cache`` only, and
        # is cleared whenever one of those is evicted and finished
        self._lists: dict[tuple[str, ...], list[Any]] = {}
        self._lock = threading.Lock()
        self._closed = False
        # learning from joined lines: offer JSON bytes → its parsed example, and its text
        self._joined: dict[bytes, Any] = {}
        self._texts: dict[bytes, str] = {}
        self._contexts: dict[bytes, str] = {}  # a context's JSON → its shared line
        self._labels: dict[bytes, tuple[str, int]] = {}  # label fields' JSON → text, index
        self._names: set[str] = set()
        self._reset: list[Any] | None = None
        # standardisation of numeric features (bandit.scaling): a served model
        # applies a fixed snapshot; a learning one keeps statistics and refreshes its
        # snapshot at each save (``saved_scale``: what that save is served with)
        self.scale = Snapshot()
        self.standardizer: Standardizer | None = None
        self.saved_scale: dict[str, Any] | None = None
        self._observed: set[str] = set()  # offer lines counted in this snapshot
        self._term_layout: tuple[int, int] | None = None  # see term_weights
        self._interactions: list[tuple[str, ...]] | None = None  # see interactions

    def standardize(self, standardizer: Standardizer) -> None:
        """Learn with running standardisation of numeric features."""
        with self._lock:
            self.standardizer = standardizer
            self._contexts.clear()

    def set_scale(self, scale: Snapshot) -> None:
        """Serve (and learn) with this fixed standardisation snapshot."""
        with self._lock:
            self.scale = scale
            self._contexts.clear()

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
        self._contexts.clear()
        self._observed.clear()
        self._forget_joined()
        self._lists.clear()
        self._give_back(list(self._cache.values()))
        self._cache.clear()

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
        ex = self._ws._parse(self._offer_text(line))[0]
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
            if not self._learn_layout(b):
                self._learn_decoded(b)

    def _learn_layout(self, line: bytes) -> bool:
        """The common layout (what the learner sends: the label fields, then ``c`` last
        with ``_multi`` last in it), without decoding the offers; False for anything
        else. An offer's bytes are decoded and checked the first time they are seen. If
        the context and every offer decode, the split was JSON's own: a list of valid
        values joined by commas parse as exactly those values. Contexts and labels
        recur too: each distinct one is decoded, checked and written as text once."""
        c = line.find(b',"c":{')
        m = line.find(b'"_multi":[{', c)
        if c < 0 or m < 0 or line[-5:] != b"}}]}}":
            return False
        if line[m - 1] == 44:  # ','
            shared = self._contexts.get(line[c + 5:m - 1])
            if shared is None:
                shared = self._shared_text(line[c + 5:m - 1])
                if shared is None:
                    return False
        elif m - 1 == c + 5:  # '{': no context
            shared = "shared |c"
        else:
            return False
        segments = line[m + 11:-5].split(b"}},{")
        if len(self._joined) + len(segments) > JOINED_OFFERS:
            self._forget_joined()
        get = self._joined.get
        actions = [get(seg) for seg in segments]
        if None in actions:
            for i, seg in enumerate(segments):
                if actions[i] is None:
                    ex = get(seg)  # (kept a moment ago if this offer is listed twice)
                    if ex is None:
                        try:
                            offer = orjson.loads(b"{" + seg + b"}}")
                        except orjson.JSONDecodeError:
                            return False
                        if not _fits_text(offer, self._names):
                            return False
                        ex = self._keep(seg, action_line(self._learned(offer)))[1]
                    actions[i] = ex
        label = self._label(line, c)
        if label is None:
            return False
        label_text, idx = label
        if idx >= len(actions):
            raise ValueError(f"label index {idx!r} out of range")
        if len(set(segments)) == len(segments):
            self._learn_examples(label_text, idx, shared, self._texts[segments[idx]],
                                 actions, [])
        else:
            hits, fresh = self._once_each(segments, [(self._texts[s], self._joined[s])
                                                     for s in segments])
            self._learn_examples(label_text, idx, shared, hits[idx][0],
                                 [h[1] for h in hits], fresh)
        return True

    def _shared_text(self, ctx: bytes) -> str | None:
        """The shared line of a joined line's context (its JSON without the closing
        brace), kept for the next line with the same context; None if it is not one."""
        try:
            obj = orjson.loads(ctx + b"}")
        except orjson.JSONDecodeError:
            return None
        if not _fits_text(obj, self._names):
            return None
        if len(self._contexts) >= JOINED_CONTEXTS:
            self._contexts.clear()
        text = self._contexts[ctx] = shared_line(self._learned(obj))
        return text

    def _label(self, line: bytes, c: int) -> tuple[str, int] | None:
        """The chosen offer's VW text label and index (not checked against the number
        of offers); None if the fields before ``c`` are not JSON. Raises ValueError for
        label fields that are not one. The label fields opening the line (as the
        learner writes them) are decoded once per distinct text."""
        end = _label_end(line, c)
        if end > 0:
            hit = self._labels.get(line[:end])
            if hit is not None:
                return hit
            try:
                label = orjson.loads(line[:end] + b"}")
            except orjson.JSONDecodeError:
                label = None
            if type(label) is dict and "_label_probability" in label:
                out = _cb_label(label)
                if len(self._labels) >= JOINED_LABELS:
                    self._labels.clear()
                self._labels[line[:end]] = out
                return out
        try:
            return _cb_label(orjson.loads(line[:c] + b"}"))
        except orjson.JSONDecodeError:
            return None

    def _once_each(self, keys: list[bytes], hits: list[tuple[str, Any]]
                   ) -> tuple[list[tuple[str, Any]], list[Any]]:
        """The offers with a repeated one parsed afresh: one example twice in a list
        corrupts VW's memory (bagging) or its update. Also returns the fresh ones."""
        if len(set(keys)) == len(keys):
            return hits, []
        seen: set[bytes] = set()
        out, fresh = [], []
        for key, hit in zip(keys, hits, strict=True):
            if key in seen:
                ex = self._ws._parse(hit[0])[0]
                fresh.append(ex)
                hit = (hit[0], ex)
            seen.add(key)
            out.append(hit)
        return out, fresh

    def _learn_decoded(self, line: bytes) -> None:
        """Any other layout: decoded whole; its offers are the cached examples too (so
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
        if not _fits_text(ctx, self._names) or \
                not all(_fits_text(o, self._names) for o in multi):
            raise ValueError("context and offers must map namespaces to numeric features "
                             "within ±3e38, with names that fit VW's text format")
        label_text, idx = _cb_label(obj)
        if idx >= len(multi):
            raise ValueError(f"label index {idx!r} out of range")
        if len(self._joined) + len(multi) > JOINED_OFFERS:
            self._forget_joined()
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
        hits, again = self._once_each(keys, hits)
        self._learn_examples(label_text, idx, shared_line(self._learned(ctx)), hits[idx][0],
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
            # update's own examples go back to VW and the cached ones stay parsed
            if self._reset is None:
                self._reset = ws._parse("shared |c x\n|o x")
            _lib.predict_multi(ws, self._reset)
            _lib._finish_example_multi_ex(ws, shared_ex + chosen + fresh)

    def _forget_joined(self) -> None:
        """Give the cached offer examples back to VW. They took part in learning, so
        they go back as VW expects a list it predicted: a shared example first, one
        predict (finishing one alone after a learn crashes VW)."""
        if not self._joined:
            return
        actions = list(self._joined.values())
        self._joined.clear()
        self._texts.clear()
        self._give_back(actions)

    def _give_back(self, actions: list[Any]) -> None:
        """Finish parsed offer examples as VW expects a list it predicted."""
        if actions:
            shared = self._ws._parse("shared |c")
            _lib.predict_multi(self._ws, shared + actions)
            _lib._finish_example_multi_ex(self._ws, shared + actions)

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
            args: Any = self._ws.get_arguments()
        return args if isinstance(args, str) else " ".join(args)

    def weight(self, namespace: str, feature: str) -> float:
        """Learned weight of a single (non-interacted) feature, for explanations."""
        with self._lock:
            return float(self._ws.get_weight_from_name(feature, namespace))

    def interactions(self) -> list[tuple[str, ...]]:
        """The namespace initials the model crosses (``-q co`` → ``[("c", "o")]``,
        ``--cubic cco`` → ``[("c", "c", "o")]``; a ``:`` stands for every namespace), as
        its arguments say."""
        if self._interactions is not None:
            return list(self._interactions)
        words = self.args_text().split()
        out: list[tuple[str, ...]] = []
        for i, w in enumerate(words[:-1]):
            term = words[i + 1]
            if (w in ("-q", "--quadratic") and len(term) == 2) or \
                    (w == "--cubic" and len(term) == 3) or \
                    (w == "--interactions" and len(term) in (2, 3)):
                out.append(tuple(term))
        self._interactions = out
        return list(out)

    def term_weights(self, terms: Sequence[tuple[tuple[str, str], ...]]) -> list[float]:
        """The weight of each term (one feature ``((ns, name),)``, or a crossing of two
        or three ``((ns1, name1), (ns2, name2), …)``) as the model's prediction uses it:
        VW hashes a crossing as ``(h1 · 16777619) ^ h2`` (then ``· 16777619 ^ h3``), the
        features' hashes scaled by the weights per model; a bagged model's weight is the
        mean over its members."""
        models, bits = self._layout()
        per = 1 << (models - 1).bit_length()  # VW rounds the models up to a power of 2
        mask = (1 << bits) - 1
        with self._lock:
            if self._closed:
                raise RuntimeError("model is closed")
            ws = self._ws
            hashes: dict[tuple[str, str], int] = {}

            def h(ns: str, name: str) -> int:
                key = (ns, name)
                if key not in hashes:
                    hashes[key] = int(ws.hash_feature(name, ws.hash_space(ns)))
                return hashes[key]

            out = []
            for term in terms:
                base = h(*term[0]) * per
                for part in term[1:]:
                    base = ((base * _FNV_PRIME) ^ (h(*part) * per)) & _U64
                total = 0.0
                for k in range(models):
                    total += float(ws.get_weight((base + k) & mask, 0))
                out.append(total / models)
        return out

    def _layout(self) -> tuple[int, int]:
        """(models in the workspace, bits of its weight table), from its arguments."""
        if self._term_layout is None:
            words = self.args_text().split()
            models, bits = 1, 18
            for i, w in enumerate(words[:-1]):
                if w == "--bag" and words[i + 1].isdigit():
                    models = max(1, int(words[i + 1]))
                elif w in ("-b", "--bit_precision") and words[i + 1].isdigit():
                    bits = int(words[i + 1])
            self._term_layout = (models, bits)
        return self._term_layout

    def close(self) -> None:
        """Return cached examples to VW and release the workspace."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lists.clear()
            self._give_back(list(self._cache.values()))  # (one alone may crash VW)
            self._cache.clear()
            self._forget_joined()
            if self._reset is not None:
                _lib._finish_example_multi_ex(self._ws, self._reset)
            self._ws.finish()
