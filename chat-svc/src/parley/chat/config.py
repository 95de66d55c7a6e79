"""chat-svc settings, from PARLEY_* environment variables.

A remote provider is configured by its key: without `PARLEY_ANTHROPIC_API_KEY` there is no
`anthropic` provider, and so on. `local` is always there. Lists are comma-separated.
"""

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from parley.kit.contracts import LOCAL_PROVIDER
from parley.kit.settings import ServiceSettings

# A comma-separated value (`a,b`) rather than pydantic-settings' JSON for lists.
Names = Annotated[tuple[str, ...], NoDecode]


class Settings(ServiceSettings):
    retrieval_target: str
    ingestion_target: str
    usage_target: str
    # A request that names no provider gets this one; one that names no model, the provider's default.
    default_provider: str = LOCAL_PROVIDER
    default_max_tokens: int = 1024
    history_messages: int = 10
    # A turn that comes this long after the conversation's last message (past the 5-minute life of
    # a provider's short cache) writes its prompt to the cache for an hour (Prompt.long_cache).
    cache_hour_after_seconds: float = 300.0
    # Passages per intent: the best across the collections (semantic), or those most like the
    # open section (hybrid, beside the section itself).
    semantic_k: int = 10
    similar_k: int = 5
    # A cheaper model (`provider:model`) asked for a message's intent when the keywords say
    # nothing; empty: no call, such a message is a `question`.
    intent_model: str = ""
    # The writers' room tools (tools.py): how many rounds of tool calls a turn over scripts may take
    # before the model must answer; 0 offers no tools. The turn's hold covers every round.
    tool_rounds: int = 3
    # Who folds a long conversation's older messages into its rolling summary, in the background:
    # `auto` the default provider (its cheaper model where it has one; with `local`, an extractive
    # summary that calls no model), `provider:model` that model, `off` none (the recent window alone).
    summary_model: str = "auto"
    # Provider tokens are gathered into frames: fewer NATS messages and SSE writes per answer.
    frame_chars: int = 48
    frame_seconds: float = 0.05
    publish_timeout_seconds: float = 5.0
    # How long a cancel waits for the replica running the turn to answer; silence means not running.
    cancel_wait_seconds: float = 1.0
    # Turn leases (leases.TurnLeases): the replica running a turn renews it every heartbeat for
    # `turn_lease_seconds`; every replica, every `turn_sweep_seconds`, settles the running turns
    # whose lease ran out (their replica died) at their hold. A dead replica's turns are settled
    # within lease + sweep seconds; the lease must outlast a few missed heartbeats.
    turn_lease_seconds: float = 15.0
    turn_heartbeat_seconds: float = 5.0
    turn_sweep_seconds: float = 5.0

    # Claude, through Anthropic's Messages API. The first model is the default.
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    anthropic_models: Names = ("claude-sonnet-4-6", "claude-haiku-4-5")
    # OpenAI's Chat Completions API. The first model is the default.
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_models: Names = ("gpt-4o-mini", "gpt-4o")
    # An OpenAI-compatible server (vLLM, llama.cpp, Ollama), served as provider `compatible_name`
    # when `compatible_base_url` is set. Most such servers take any key, and `max_tokens` only.
    compatible_name: str = "compatible"
    compatible_base_url: str | None = None
    compatible_api_key: SecretStr = SecretStr("not-needed")
    compatible_models: Names = ()
    compatible_token_limit: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"

    # Remote calls: how long to wait for the first token, and the retries before it.
    llm_read_timeout_seconds: float = 60.0
    llm_first_token_timeout_seconds: float = 25.0
    llm_retries: int = 3
    llm_backoff_base_seconds: float = 0.5
    llm_backoff_max_seconds: float = 8.0
    llm_max_retry_after_seconds: float = 30.0
    # Attempts the provider billed before failing (Anthropic's stream broken after message_start),
    # beyond the first, that may be retried: every hold covers 1 + this many calls.
    llm_paid_retries: int = Field(default=1, ge=0)
    # Where a remote provider's call goes when its retries are spent: `provider:model`, in order.
    llm_fallback: Names = ()

    @field_validator("anthropic_base_url", "openai_base_url", "compatible_base_url", mode="before")
    @classmethod
    def _unset_if_empty(cls, value: object) -> object:
        # A ConfigMap entry left empty means "the vendor's own URL" (or no compatible server).
        return None if value == "" else value

    @field_validator("anthropic_models", "openai_models", "compatible_models", "llm_fallback", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value
