"""The retrieval service's settings, read once from `PARLEY_*` environment variables."""

from typing import Literal

from parley.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    # Only the offline embedder exists so far; "openai" (text-embedding-3-small asked for
    # 256 dimensions, so the vector(256) columns keep fitting) comes with its client.
    embedding_provider: Literal["local"] = "local"
