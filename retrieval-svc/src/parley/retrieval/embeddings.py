"""Embedders: texts in, unit-length vectors out, and the tokens the call is billed for.

Three kinds, chosen by `PARLEY_EMBEDDING_PROVIDER`:
- `MiniLmEmbedder` (minilm.py, all-MiniLM-L6-v2 on the CPU) is the default: semantic, offline.
- `OpenAiEmbedder` (embedding_openai.py): OpenAI's embeddings API, `dimensions` configurable.
- `LocalEmbedder`: no model, no network, the same vector for the same text on every machine and
  every run. It hashes normalised word unigrams and bigrams into signed buckets ("the hashing
  trick"), so texts that share words point the same way. It is lexical, not semantic, and
  instant: for tests, and machines where a model's ~60 ms per chunk is too much.

An embedder's `name` identifies its vectors (the model and everything that changes them, such as
the width): vectors are stored and cached under it, and only vectors of one name are compared.
`embedder_registry` builds the configured one, and rebuilds another from the name its vectors
carry, so the service can keep serving from the previous model's vectors while it re-embeds.
"""

import asyncio
import hashlib
import itertools
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from parley.kit.contracts import LOCAL_PROVIDER

# The local embedder's default width: all-MiniLM-L6-v2's, so the two are interchangeable in tests.
LOCAL_DIMENSIONS = 384

_WORD = re.compile(r"[^\W_]+")
_POSSESSIVE = re.compile(r"['’]s\b")
_BIGRAM_WEIGHT = 0.5


@dataclass(frozen=True, slots=True)
class Embedded:
    """One call's vectors, in the order of its texts, and the input tokens it is billed for."""

    vectors: list[list[float]]
    input_tokens: int


class Embedder(Protocol):
    @property
    def name(self) -> str:
        """Identifies the vectors it makes: they are stored, cached and compared under it."""
        ...

    @property
    def provider(self) -> str:
        """Who is paid for a call, as usage-svc prices it (`local` costs nothing)."""
        ...

    @property
    def model(self) -> str:
        """The model as the provider (and usage-svc's price table) names it."""
        ...

    @property
    def dimensions(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> Embedded: ...

    async def warm_up(self) -> None:
        """Load now whatever the first embed would, so the first search does not wait for it."""
        ...

    async def close(self) -> None: ...


class LocalEmbedder:
    provider = LOCAL_PROVIDER

    def __init__(self, *, dimensions: int = LOCAL_DIMENSIONS) -> None:
        self.dimensions = dimensions
        # Bump the suffix whenever the vectors change, so cached vectors of the old scheme are not reused.
        self.name = f"local-hash-{dimensions}-v1"
        self.model = self.name

    async def warm_up(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def embed(self, texts: Sequence[str]) -> Embedded:
        # Pure CPU work: a large document should not stall the event loop (and the gRPC calls on it).
        if len(texts) > 32:
            return await asyncio.to_thread(self._embed_now, texts)
        return self._embed_now(texts)

    def _embed_now(self, texts: Sequence[str]) -> Embedded:
        return Embedded(
            vectors=[embed_text(text, dimensions=self.dimensions) for text in texts],
            # Its "tokens" are the words it hashes: billed at nothing, but a tenant sees the volume.
            input_tokens=sum(len(terms(text)) for text in texts),
        )


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


def embed_text(text: str, *, dimensions: int = LOCAL_DIMENSIONS) -> list[float]:
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
