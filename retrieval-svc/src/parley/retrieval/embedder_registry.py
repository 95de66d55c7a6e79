"""Which embedder a name stands for: the configured one, and those whose vectors are stored.

A vector's model name says everything that made it (embeddings.py), so the embedder of vectors
made under an earlier configuration can be rebuilt from the name alone, to embed queries for
those vectors while the new model's are being made.
"""

import re

from parley.retrieval.config import Settings
from parley.retrieval.embedding_openai import OpenAiEmbedder
from parley.retrieval.embeddings import Embedder, LocalEmbedder
from parley.retrieval.minilm import MiniLmEmbedder

_LOCAL_NAME = re.compile(r"local-hash-(\d+)-v1")
_OPENAI_NAME = re.compile(r"openai/(.+)@(\d+)")


def build_embedder(settings: Settings) -> Embedder:
    match settings.embedding_provider:
        case "minilm":
            return MiniLmEmbedder()
        case "local":
            return LocalEmbedder()
        case "openai":
            return _openai(settings, model=settings.embedding_model, dimensions=settings.embedding_dimensions)


def embedder_named(name: str, settings: Settings) -> Embedder | None:
    """The embedder whose vectors carry `name`, if this service can build it: None for a model
    this build does not know, or an OpenAI one without a key."""
    if name == MiniLmEmbedder.name:
        return MiniLmEmbedder()
    if local := _LOCAL_NAME.fullmatch(name):
        return LocalEmbedder(dimensions=int(local[1]))
    if (remote := _OPENAI_NAME.fullmatch(name)) and settings.openai_api_key is not None:
        return _openai(settings, model=remote[1], dimensions=int(remote[2]))
    return None


def _openai(settings: Settings, *, model: str, dimensions: int) -> OpenAiEmbedder:
    if settings.openai_api_key is None:
        raise ValueError("openai embeddings need PARLEY_OPENAI_API_KEY")
    return OpenAiEmbedder(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        model=model,
        dimensions=dimensions,
        timeout=settings.embedding_timeout_seconds,
        max_retries=settings.embedding_retries,
    )
