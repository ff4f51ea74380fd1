"""Deterministic embedding vectors, so retrieval tests can assert on exact neighbours."""

from __future__ import annotations

import hashlib
import math
import random
import struct
from collections.abc import Sequence


def embedding_vector(model: str, text: str, dimensions: int) -> list[float]:
    """A unit vector seeded by (model, text): same input, same vector, on any machine.

    Shorter `dimensions` give a prefix of the longer vector, renormalised — the same
    property as OpenAI's shortened text-embedding-3 vectors.
    """
    seed = int.from_bytes(hashlib.sha256(f"{model}\0{text}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def pack_float32(values: Sequence[float]) -> bytes:
    """Little-endian float32, the layout SDKs expect behind base64 embeddings."""
    return struct.pack(f"<{len(values)}f", *values)
