"""Signed feature hashing of JSON features into fixed-width vectors.

Shared by the LightGBM policy (which scores offers at decision time) and the replay
(which builds the same vectors from logs to train and evaluate it), so both hash a
feature to the same bucket with the same sign.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def flatten(obj: Any, prefix: str = "") -> Iterable[tuple[str, float]]:
    """(feature name, value) pairs of any JSON features object: strings are
    categorical (``path=value``), numbers numeric, lists of strings bags."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if k in ("_multi", "_slots") or (isinstance(k, str) and k.startswith("_label")):
                continue
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            if isinstance(v, str):
                yield f"{prefix}={v}", 1.0
            else:
                yield from flatten(v, f"{prefix}#{i}")
    elif isinstance(obj, bool):
        yield f"{prefix}={str(obj).lower()}", 1.0
    elif isinstance(obj, (int, float)):
        yield prefix, float(obj)
    elif isinstance(obj, str):
        yield f"{prefix}={obj}", 1.0


def hash_features(obj: Any, dim: int) -> np.ndarray:
    """Feature hashing into ``dim`` buckets (signed, so collisions cancel on average)."""
    out = np.zeros(dim, dtype=np.float32)
    for name, value in flatten(obj):
        h = zlib.crc32(name.encode("utf-8"))
        out[h % dim] += value if (h >> 31) & 1 == 0 else -value
    return out
