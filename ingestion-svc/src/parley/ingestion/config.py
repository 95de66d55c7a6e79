"""Ingestion's settings, read once from `PARLEY_*` environment variables."""

from pydantic import Field

from parley.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    chunk_max_tokens: int = Field(default=300, ge=16)
    max_document_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    # A document's chunk set is one event, and NATS refuses messages above its max_payload (1 MiB
    # unless configured; Parley's NATS configs set 16 MiB). A chunk set that would not fit fails the
    # document instead of blocking the outbox behind a message that can never go out.
    max_event_bytes: int = Field(default=16 * 1024 * 1024 - 64 * 1024, gt=0)
    # Who writes artifacts (scene cards, outlines, character sheets, plot threads): `local` extracts
    # them offline from the text; any other name is a chat-svc provider, asked through `Complete`.
    artifacts_provider: str = "local"
    artifacts_model: str = ""  # empty: the provider's default model
