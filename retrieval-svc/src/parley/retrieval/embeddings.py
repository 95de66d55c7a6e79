"""Embedders: text in, unit-length vectors out, `DIMENSIONS` wide (the index's vector column).

`MiniLmEmbedder` (minilm.py, all-MiniLM-L6-v2 on the CPU) is the default: semantic, offline.
`LocalEmbedder` is the offline default: no model, no network, the same vector for the same
text on every machine and every run. It hashes normalised word unigrams and bigrams into
signed buckets ("the hashing trick"), so texts that share words point the same way. It is
lexical, not semantic, and instant: for tests, and machines where a model's ~60 ms per chunk is
too much.
"""

import asyncio
import hashlib
import itertools
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Protocol

from parley.retrieval.config import Settings
from parley.retrieval.minilm import MiniLmEmbedder

# all-MiniLM-L6-v2's width; the local embedder hashes into as many buckets, so either fits the column.
DIMENSIONS = 384

_WORD = re.compile(r"[^\W_]+")
_POSSESSIVE = re.compile(r"['’]s\b")
_BIGRAM_WEIGHT = 0.5


class Embedder(Protocol):
    @property
    def name(self) -> str:
        """Identifies the vectors it makes: the embedding cache is keyed on it."""
        ...

    @property
    def dimensions(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def warm_up(self) -> None:
        """Load now whatever the first embed would, so the first search does not wait for it."""
        ...


def build_embedder(settings: Settings) -> Embedder:
    match settings.embedding_provider:
        case "minilm":
            return MiniLmEmbedder()
        case "local":
            return LocalEmbedder()


class LocalEmbedder:
    # Bump the suffix whenever the vectors change, so cached vectors of the old scheme are not reused.
    name = "local-hash-384-v1"
    dimensions = DIMENSIONS

    async def warm_up(self) -> None:
        return None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        # Pure CPU work: a large document should not stall the event loop (and the gRPC calls on it).
        if len(texts) > 32:
            return await asyncio.to_thread(lambda: [embed_text(text) for text in texts])
        return [embed_text(text) for text in texts]


def terms(text: str) -> list[str]:
    """Lowercase words with punctuation removed and a light suffix strip."""
    normalised = unicodedata.normalize("NFKC", text).lower()
    return [_stem(word) for word in _WORD.findall(_POSSESSIVE.sub("", normalised))]


def _stem(word: str) -> str:
    # Only plural endings: stripping -ing/-ed/-es would split "engine"/"engines" or "run"/"running"
    # in ways a real stemmer handles and a three-line one does not.
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def embed_text(text: str, *, dimensions: int = DIMENSIONS) -> list[float]:
    """The vector of one text; all zeros when it has no words."""
    words = terms(text)
    vector = [0.0] * dimensions
    features = [(word, 1.0) for word in words]
    features += [(f"{left} {right}", _BIGRAM_WEIGHT) for left, right in itertools.pairwise(words)]
    for feature, weight in features:
        # blake2b, not hash(): Python salts str hashes per process, and vectors must be stable.
        digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
        sign = 1.0 if digest & 1 else -1.0
        vector[(digest >> 1) % dimensions] += sign * weight
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0.0:
        return vector
    return [value / norm for value in vector]


def is_zero(vector: Sequence[float]) -> bool:
    return not any(vector)


def cosine_similarity(left: Sequence[float], right: Sequence[float]) -> float:
    dot = sum(a * b for a, b in zip(left, right, strict=True))
    norms = math.sqrt(sum(a * a for a in left)) * math.sqrt(sum(b * b for b in right))
    return dot / norms if norms else 0.0
