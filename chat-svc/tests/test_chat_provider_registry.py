"""Which providers a replica serves follows from its settings, and a setting naming a provider
or model that is not served stops the service at start."""

import pytest

from parley.chat.config import Settings
from parley.chat.providers import ReliableProvider, providers

BASE = {
    "database_url": "postgresql+asyncpg://unused/db",
    "nats_url": "nats://unused:4222",
    "retrieval_target": "unused:1",
    "ingestion_target": "unused:1",
    "usage_target": "unused:1",
}


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(f"PARLEY_{name.upper()}", value)
    return Settings(**BASE)  # type: ignore[arg-type]


async def test_without_keys_only_local_is_served(monkeypatch: pytest.MonkeyPatch) -> None:
    assert list(providers(settings(monkeypatch))) == ["local"]


async def test_each_key_or_base_url_adds_its_provider_with_its_models(monkeypatch: pytest.MonkeyPatch) -> None:
    served = providers(
        settings(
            monkeypatch,
            anthropic_api_key="sk-ant-real-enough",
            openai_api_key="sk-real-enough",
            openai_models="gpt-4o-mini, gpt-4o",
            compatible_name="ollama",
            compatible_base_url="http://127.0.0.1:11434/v1",
            compatible_models="llama3.2",
            llm_fallback="openai:gpt-4o-mini,ollama",
            default_provider="anthropic",
        )
    )
    assert list(served) == ["local", "anthropic", "openai", "ollama"]
    assert all(isinstance(served[name], ReliableProvider) for name in ("anthropic", "openai", "ollama"))
    assert served["openai"].models == ("gpt-4o-mini", "gpt-4o") and served["openai"].default_model == "gpt-4o-mini"
    assert served["ollama"].models == ("llama3.2",)
    for provider in served.values():
        await provider.close()


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({"default_provider": "anthropic"}, "PARLEY_DEFAULT_PROVIDER"),
        ({"llm_fallback": "openai:gpt-4o-mini"}, "PARLEY_LLM_FALLBACK names 'openai'"),
        ({"openai_api_key": "sk-real-enough", "llm_fallback": "openai:gpt-9"}, "openai serves gpt-4o-mini, gpt-4o"),
        ({"compatible_base_url": "http://127.0.0.1:8000/v1"}, "PARLEY_COMPATIBLE_MODELS is empty"),
    ],
)
def test_a_setting_naming_what_is_not_served_is_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], refusal: str
) -> None:
    with pytest.raises(ValueError, match=refusal):
        providers(settings(monkeypatch, **env))


def test_a_placeholder_key_is_refused_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="PARLEY_ANTHROPIC_API_KEY"):
        settings(monkeypatch, anthropic_api_key="changeme")
    assert settings(monkeypatch, anthropic_api_key="changeme", env="dev").anthropic_api_key is not None
