"""LLM providers: one interface (`base.LlmProvider`), its implementations and what serves them.

- `base` — the interface and its stream events (`Reported`, `TextDelta`, `Finished`, and
  `FailedAttempt` from `reliability`), prompt and text token counts and bounds.
- `local` — `LocalProvider`, the offline, deterministic default (free).
- `anthropic`, `openai` — the SDK-backed providers (`openai` also speaks to compatible servers).
- `errors` — how a provider fails, whatever its SDK said.
- `reliability` — `ReliableProvider`: retries, first-token timeout and fallback around a remote one.
- `registry` — the providers a replica serves, built from its settings, and how a request picks one.

Callers import the names below from here; a test of one implementation's details imports its module.
"""

from parley.chat.providers.anthropic import AnthropicProvider
from parley.chat.providers.base import (
    FailedAttempt,
    Finished,
    LlmProvider,
    ProviderEvent,
    Reported,
    TextDelta,
    cut_off_usage,
    prompt_tokens,
    request_token_bound,
    text_token_bound,
)
from parley.chat.providers.errors import (
    FirstTokenTimeout,
    ProviderError,
    ProviderRefused,
    ProviderUnavailable,
    StreamBroken,
)
from parley.chat.providers.local import LocalProvider
from parley.chat.providers.openai import OpenAIProvider
from parley.chat.providers.registry import EXTRACTIVE, choose, configured_model, providers, summary_model
from parley.chat.providers.reliability import (
    HoldSize,
    ReliableProvider,
    RetryPolicy,
    Route,
    billed_calls,
    hold_routes,
    hold_size,
)

__all__ = [
    "EXTRACTIVE",
    "AnthropicProvider",
    "FailedAttempt",
    "Finished",
    "FirstTokenTimeout",
    "HoldSize",
    "LlmProvider",
    "LocalProvider",
    "OpenAIProvider",
    "ProviderError",
    "ProviderEvent",
    "ProviderRefused",
    "ProviderUnavailable",
    "ReliableProvider",
    "Reported",
    "RetryPolicy",
    "Route",
    "StreamBroken",
    "TextDelta",
    "billed_calls",
    "choose",
    "configured_model",
    "cut_off_usage",
    "hold_routes",
    "hold_size",
    "prompt_tokens",
    "providers",
    "request_token_bound",
    "summary_model",
    "text_token_bound",
]
