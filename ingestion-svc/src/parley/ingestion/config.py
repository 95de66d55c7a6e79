"""Ingestion's settings, read once from `PARLEY_*` environment variables."""

from pydantic import Field, model_validator

from parley.kit.contracts import LOCAL_PROVIDER
from parley.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    chunk_max_tokens: int = Field(default=300, ge=16)
    max_document_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    # The largest event ingestion publishes. NATS refuses messages above its max_payload (1 MiB
    # unless configured; Parley's NATS configs set 16 MiB, and the service lowers this to what the
    # server it connects to takes): a chunk set larger than this goes in parts (pipeline.in_parts),
    # which retrieval puts back together before indexing the version.
    max_event_bytes: int = Field(default=16 * 1024 * 1024 - 64 * 1024, gt=0)
    # Who writes artifacts (scene cards, outlines, sheets, plot threads, coverage): `local` extracts
    # them offline from the text; any other name is a chat-svc provider, asked through `Complete`.
    artifacts_provider: str = LOCAL_PROVIDER
    artifacts_model: str = ""  # empty: the provider's default model
    # A model's completion takes far longer than an ordinary call (kit's call_deadline_seconds).
    artifacts_deadline_seconds: float = Field(default=120.0, gt=0)

    # --- Artifacts: when a screenplay has grown enough for which, and when one goes stale ---------
    # chat-svc, whose Complete writes artifacts with a model ("" when they are written offline).
    chat_target: str = ""
    # A screenplay is partial (scene cards) from either threshold, analyzed (cards, outline,
    # character sheets, plot threads) from either of the next two.
    partial_at_scenes: int = Field(default=3, ge=1)
    partial_at_pages: int = Field(default=10, ge=1)
    analyzed_at_scenes: int = Field(default=30, ge=1)
    analyzed_at_pages: int = Field(default=60, ge=1)
    # Changed scenes (since it was written) after which a sheet (scenes its character speaks in)
    # or the outline and plot threads (any scenes) are stale.
    sheet_stale_after_scenes: int = Field(default=3, ge=1)
    outline_stale_after_scenes: int = Field(default=5, ge=1)
    # Scene cards one analysis job writes: the ingest worker looks at its upload queues between jobs.
    cards_per_job: int = Field(default=8, ge=1)

    @model_validator(mode="after")
    def _analyzed_is_past_partial(self) -> "Settings":
        if self.analyzed_at_scenes < self.partial_at_scenes or self.analyzed_at_pages < self.partial_at_pages:
            raise ValueError("PARLEY_ANALYZED_AT_* must not be below PARLEY_PARTIAL_AT_*")
        if self.artifacts_provider != LOCAL_PROVIDER and not self.chat_target:
            raise ValueError("PARLEY_ARTIFACTS_PROVIDER names a model: set PARLEY_CHAT_TARGET, where chat-svc is")
        return self
