"""Reading a VW workspace's arguments and learned weights, for explanations (the
caller holds the model's lock)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_FNV_PRIME = 16777619  # VW's quadratic-interaction hash multiplier
_U64 = (1 << 64) - 1


class WeightReader:
    """The arguments, crossings and term weights of the workspace ``ws``."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._term_layout: tuple[int, int] | None = None  # see term_weights
        self._interactions: list[tuple[str, ...]] | None = None  # see interactions

    def args_text(self) -> str:
        """The arguments the workspace runs with (those stored in a loaded model too)."""
        args: Any = self._ws.get_arguments()
        return args if isinstance(args, str) else " ".join(args)

    def weight(self, namespace: str, feature: str) -> float:
        """Learned weight of a single (non-interacted) feature."""
        return float(self._ws.get_weight_from_name(feature, namespace))

    def interactions(self) -> list[tuple[str, ...]]:
        """The namespace initials the model crosses (``-q co`` → ``[("c", "o")]``,
        ``--cubic cco`` → ``[("c", "c", "o")]``; a ``:`` stands for every namespace), as
        its arguments say."""
        if self._interactions is None:
            words = self.args_text().split()
            out: list[tuple[str, ...]] = []
            for i, w in enumerate(words[:-1]):
                term = words[i + 1]
                if (w in ("-q", "--quadratic") and len(term) == 2) or \
                        (w == "--cubic" and len(term) == 3) or \
                        (w == "--interactions" and len(term) in (2, 3)):
                    out.append(tuple(term))
            self._interactions = out
        return list(self._interactions)

    def term_weights(self, terms: Sequence[tuple[tuple[str, str], ...]]) -> list[float]:
        """The weight of each term (one feature ``((ns, name),)``, or a crossing of two
        or three ``((ns1, name1), (ns2, name2), …)``) as the model's prediction uses it:
        VW hashes a crossing as ``(h1 · 16777619) ^ h2`` (then ``· 16777619 ^ h3``), the
        features' hashes scaled by the weights per model; a bagged model's weight is the
        mean over its members."""
        models, bits = self._layout()
        per = 1 << (models - 1).bit_length()  # VW rounds the models up to a power of 2
        mask = (1 << bits) - 1
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
