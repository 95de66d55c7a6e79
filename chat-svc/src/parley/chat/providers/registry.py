"""The providers this replica serves, built from its settings.

`local` always; `anthropic` and `openai` when their key is set; the OpenAI-compatible server
when its base URL is set. Each remote one is wrapped in a `ReliableProvider` with the
configured retry policy and fallback routes (`PARLEY_LLM_FALLBACK="openai:gpt-4o-mini"`). A
setting that names a provider or model not served here stops the service at start, not a turn.

`configured_model` reads a `provider:model` setting (the intent model, an explicit summary
model) the same way; `summary_model` reads `PARLEY_SUMMARY_MODEL` with its `auto` and `off`;
`choose` is how every request that names a provider and model (a turn, a completion) is checked:
unknown ones are InvalidInput listing the known ones.
"""

from collections.abc import Mapping
from typing import Final, Literal

from parley.chat.config import Settings
from parley.chat.providers.anthropic import AnthropicProvider
from parley.chat.providers.base import LlmProvider
from parley.chat.providers.local import LocalProvider
from parley.chat.providers.openai import OpenAIProvider
from parley.chat.providers.reliability import ReliableProvider, RetryPolicy, Route
from parley.kit.contracts import LOCAL_PROVIDER
from parley.kit.errors import InvalidInput


def providers(settings: Settings) -> dict[str, LlmProvider]:
    """Every provider by name; the caller closes them (`LlmProvider.close`) at shutdown."""
    remote = _remote(settings)
    served: dict[str, LlmProvider] = {LOCAL_PROVIDER: LocalProvider(), **remote}
    fallbacks = [_route(route, served) for route in settings.llm_fallback]
    policy = RetryPolicy(
        first_token_timeout=settings.llm_first_token_timeout_seconds,
        retries=settings.llm_retries,
        backoff_base=settings.llm_backoff_base_seconds,
        backoff_max=settings.llm_backoff_max_seconds,
        max_retry_after=settings.llm_max_retry_after_seconds,
        paid_retries=settings.llm_paid_retries,
    )
    for name, provider in remote.items():
        served[name] = ReliableProvider(provider, fallbacks=fallbacks, policy=policy)
    if settings.default_provider not in served:
        raise ValueError(
            f"PARLEY_DEFAULT_PROVIDER is {settings.default_provider!r}, which is not configured; "
            f"configured: {', '.join(served)}"
        )
    return served


# A provider's cheaper model, asked for background work when no model is named (both are in
# usage-svc's price table: Haiku at a fifth of Sonnet's price, GPT-4o mini at a sixteenth of GPT-4o's).
CHEAPER_MODEL: Final = {"anthropic": "claude-haiku-4-5", "openai": "gpt-4o-mini"}
# `summary_model`'s answer when summaries need no model: offline, the extractive summary.
EXTRACTIVE: Final = "extractive"
SUMMARY_AUTO, SUMMARY_OFF = "auto", "off"


def configured_model(setting: str, spec: str, served: Mapping[str, LlmProvider]) -> tuple[LlmProvider, str] | None:
    """The model a `provider:model` setting names, None when it is empty (or `PARLEY_SUMMARY_MODEL`'s
    `auto` / `off`, which name none); one not served stops the service."""
    if spec in ("", SUMMARY_AUTO, SUMMARY_OFF):
        return None
    name, _, model = spec.partition(":")
    provider = served.get(name)
    if provider is None or model not in provider.models:
        raise ValueError(f"{setting}={spec!r} names no provider:model this service serves")
    return provider, model


def summary_model(
    spec: str, served: Mapping[str, LlmProvider], *, default_provider: str
) -> tuple[LlmProvider, str] | Literal["extractive"] | None:
    """Who writes a conversation's rolling summary: `off` nobody (None); `auto` the default provider,
    with its cheaper model when it serves one, or the extractive summary when the default is `local`;
    `provider:model` that model."""
    if spec == SUMMARY_OFF:
        return None
    if spec in ("", SUMMARY_AUTO):
        provider = served[default_provider]
        if provider.name == LOCAL_PROVIDER:
            return EXTRACTIVE
        cheaper = CHEAPER_MODEL.get(provider.name, "")
        return provider, cheaper if cheaper in provider.models else provider.default_model
    return configured_model("PARLEY_SUMMARY_MODEL", spec, served)


def choose(
    served: Mapping[str, LlmProvider], *, provider: str, model: str, default: tuple[LlmProvider, str]
) -> tuple[LlmProvider, str]:
    """The provider and model a request names. No provider: `default`'s, and its model unless the
    request names another; a provider without a model: that provider's default model."""
    if provider and provider not in served:
        raise InvalidInput(f"unknown provider {provider!r}; known: {', '.join(served)}")
    chosen = served[provider] if provider else default[0]
    model = model or (chosen.default_model if provider else default[1])
    if model not in chosen.models:
        raise InvalidInput(f"unknown model {model!r} for {chosen.name}; known: {', '.join(chosen.models)}")
    return chosen, model


def _remote(settings: Settings) -> dict[str, LlmProvider]:
    remote: dict[str, LlmProvider] = {}
    timeout = settings.llm_read_timeout_seconds
    if settings.anthropic_api_key is not None:
        default, *others = _models("ANTHROPIC", settings.anthropic_models)
        remote["anthropic"] = AnthropicProvider(
            api_key=settings.anthropic_api_key.get_secret_value(),
            default_model=default,
            models=others,
            base_url=settings.anthropic_base_url,
            read_timeout=timeout,
        )
    if settings.openai_api_key is not None:
        default, *others = _models("OPENAI", settings.openai_models)
        remote["openai"] = OpenAIProvider(
            api_key=settings.openai_api_key.get_secret_value(),
            default_model=default,
            models=others,
            base_url=settings.openai_base_url,
            read_timeout=timeout,
        )
    if settings.compatible_base_url is not None:
        if settings.compatible_name in (LOCAL_PROVIDER, *remote):
            raise ValueError(f"PARLEY_COMPATIBLE_NAME {settings.compatible_name!r} is taken by another provider")
        default, *others = _models("COMPATIBLE", settings.compatible_models)
        remote[settings.compatible_name] = OpenAIProvider(
            api_key=settings.compatible_api_key.get_secret_value(),
            default_model=default,
            models=others,
            base_url=settings.compatible_base_url,
            read_timeout=timeout,
            name=settings.compatible_name,
            token_limit=settings.compatible_token_limit,
        )
    return remote


def _models(prefix: str, models: tuple[str, ...]) -> tuple[str, ...]:
    if not models:
        raise ValueError(f"PARLEY_{prefix}_MODELS is empty; name at least one model (the first is the default)")
    return models


def _route(route: str, served: dict[str, LlmProvider]) -> Route:
    name, _, model = route.partition(":")
    provider = served.get(name)
    if provider is None:
        configured = ", ".join(served)
        raise ValueError(f"PARLEY_LLM_FALLBACK names {name!r}, which is not configured; configured: {configured}")
    model = model or provider.default_model
    if model not in provider.models:
        raise ValueError(f"PARLEY_LLM_FALLBACK names {route!r}; {name} serves {', '.join(provider.models)}")
    return Route(provider, model)
