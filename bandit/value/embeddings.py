"""Text embeddings of catalogue entries for cold start (the optional extra
``offer-bandit[embeddings]``).

A new offer has no history, so its heads' predictions are guesses. Its title and
description say what it is: embedded with WordLlama (a small static sentence-embedding
model whose weights and tokenizer ship inside the ``wordllama`` wheel; nothing is
downloaded at run time), the offers nearest in meaning lend it a prior.

For a new offer *n* with unit embedding *e_n* and known offers *j* with embeddings
*e_j* and values *v_j* (a head's mean prediction, an observed rate, ...), the
neighbours are the *k* offers with the largest cosine similarity ``c_j = e_n · e_j``
above ``min_similarity``, and the prior is the similarity-weighted mean

    prior(n) = Σ_j max(c_j, 0) v_j / Σ_j max(c_j, 0)

(None when no offer is similar enough). :func:`blend` mixes it with the model's own
prediction as the offer gathers impressions *m*: ``(m · model + s · prior) / (m + s)``,
*s* the prior's strength in pseudo-impressions.

Embeddings are cached per catalogue entry and recomputed only when its text changes.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bandit.value.catalogue import CatalogueEntry

Array = npt.NDArray[np.float32]
EXTRA = "offer-bandit[embeddings]"


class EmbeddingsUnavailable(RuntimeError):
    """The optional embeddings extra is not installed."""


def load_model() -> Any:
    """WordLlama's default model (``l2_supercat``, 256 dimensions) from the files inside
    its wheel. ``WordLlama.load()`` looks for the bundled tokenizer under ``tokenizer/``
    while the wheel (0.4.0) ships it under ``tokenizers/``, and then downloads it: so
    the model is built from the bundled files directly, and never touches the network.
    """
    root_logger = logging.getLogger()
    handlers, level = list(root_logger.handlers), root_logger.level
    try:
        import wordllama
        from safetensors import safe_open
        from tokenizers import Tokenizer
        from wordllama.inference import WordLlamaInference
    except ImportError as exc:
        raise EmbeddingsUnavailable(
            f"text embeddings need the optional extra: pip install '{EXTRA}' ({exc})"
        ) from None
    finally:
        # wordllama's inference module calls logging.basicConfig(level=INFO) on import;
        # the service's logging stays as it was configured
        root_logger.handlers[:] = handlers
        root_logger.setLevel(level)
    root = Path(wordllama.__file__).parent
    weights = root / "weights" / "l2_supercat_256.safetensors"
    tokenizer = root / "tokenizers" / "l2_supercat_tokenizer_config.json"
    for f in (weights, tokenizer):
        if not f.exists():
            raise EmbeddingsUnavailable(f"{f} is missing from the installed wordllama; "
                                        f"reinstall '{EXTRA}'")
    with safe_open(str(weights), framework="np", device="cpu") as fh:
        matrix = fh.get_tensor("embedding.weight")
    return WordLlamaInference(matrix, Tokenizer.from_file(str(tokenizer)))


class OfferEmbeddings:
    """Unit-length embeddings of catalogue entries' text, cached per entry."""

    def __init__(self, model: Any | None = None) -> None:
        self._model = model
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, Array]] = {}  # id → (text digest, embedding)

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = load_model()
        return self._model

    def embed_texts(self, texts: Sequence[str]) -> Array:
        """Unit-length embeddings (a zero vector for text with no known word)."""
        vecs = np.asarray(self.model.embed(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        out: Array = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
        return out

    def embedding(self, entry: CatalogueEntry) -> Array:
        """The entry's embedding (cached until its text changes)."""
        digest = hashlib.blake2b(entry.text.encode("utf-8"), digest_size=16).hexdigest()
        with self._lock:
            hit = self._cache.get(entry.id)
        if hit is not None and hit[0] == digest:
            return hit[1]
        vec: Array = self.embed_texts([entry.text])[0]
        with self._lock:
            self._cache[entry.id] = (digest, vec)
        return vec

    def forget(self, offer_id: str) -> None:
        with self._lock:
            self._cache.pop(offer_id, None)

    def nearest(self, entry: CatalogueEntry, others: Sequence[CatalogueEntry], k: int = 5,
                min_similarity: float = 0.2) -> list[tuple[str, float]]:
        """Up to ``k`` of ``others`` (the entry itself excluded) by cosine similarity,
        best first, those at or above ``min_similarity`` only."""
        e = self.embedding(entry)
        if not others or not e.any():
            return []
        cands = [o for o in others if o.id != entry.id]
        if not cands:
            return []
        mat = np.stack([self.embedding(o) for o in cands])
        sims = mat @ e
        order = np.argsort(-sims, kind="stable")[:k]
        return [(cands[i].id, float(sims[i])) for i in order if sims[i] >= min_similarity]

    def prior(self, entry: CatalogueEntry, others: Sequence[CatalogueEntry],
              values: Mapping[str, float], k: int = 5,
              min_similarity: float = 0.2) -> float | None:
        """The similarity-weighted mean of ``values`` over the entry's nearest offers
        that have a value; None when none is similar enough."""
        known = [o for o in others if o.id in values]
        near = self.nearest(entry, known, k, min_similarity)
        weights = [(values[i], max(c, 0.0)) for i, c in near]
        total = sum(w for _, w in weights)
        if total <= 0:
            return None
        return sum(v * w for v, w in weights) / total


def blend(prior: float | None, model: float, impressions: float, strength: float = 50.0
          ) -> float:
    """``(m · model + s · prior) / (m + s)``: the prior's weight fades as the offer's
    own impressions *m* grow (the model's prediction alone without a prior)."""
    if prior is None or strength <= 0:
        return model
    m = max(impressions, 0.0)
    return (m * model + strength * prior) / (m + strength)
