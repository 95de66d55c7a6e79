"""chat-svc settings, from PARLEY_* environment variables."""

from typing import Literal

from parley.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    retrieval_target: str
    ingestion_target: str
    usage_target: str
    # A request that names no provider (or model) gets these; the provider names its default model.
    default_provider: Literal["local"] = "local"
    default_max_tokens: int = 1024
    history_messages: int = 10
    search_k: int = 8
    # Provider tokens are gathered into frames: fewer NATS messages and SSE writes per answer.
    frame_chars: int = 48
    frame_seconds: float = 0.05
    publish_timeout_seconds: float = 5.0
    # How long a cancel waits for the replica running the turn to answer; silence means not running.
    cancel_wait_seconds: float = 1.0
