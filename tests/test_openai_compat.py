"""The OpenAI-compatible routes with the official `openai` SDK (sync, async, streamed) and what
Open WebUI asks on start, against the whole platform (the `local` model answers)."""

import asyncio
import uuid
from typing import Any

import httpx
import openai
import pytest

from parley.kit.devstack import Platform
from tests.platforms import eventually
from tests.test_end_to_end import MANUAL

QUESTION = "How often should I descale the boiler?"


@pytest.fixture(scope="module")
def manual(api: httpx.Client) -> dict[str, Any]:
    """A collection holding the espresso manual, ready to be asked."""
    created = api.post("/v1/collections", json={"name": f"espresso-{uuid.uuid4().hex[:6]}"})
    assert created.status_code == 201, created.text
    collection: dict[str, Any] = created.json()
    uploaded = api.post(
        f"/v1/collections/{collection['id']}/documents",
        files={"file": ("espresso.md", MANUAL.encode(), "text/markdown")},
    )
    assert uploaded.status_code == 202, uploaded.text

    def ready() -> bool:
        document = api.get(f"/v1/documents/{uploaded.json()['id']}").json()
        assert document["status"] != "failed", document
        return bool(document["status"] == "ready")

    eventually(ready)
    return collection


@pytest.fixture(scope="module")
def client(platform: Platform) -> openai.OpenAI:
    assert platform.secrets is not None
    return openai.OpenAI(base_url=f"{platform.gateway_url}/v1", api_key=platform.secrets.admin_api_key, max_retries=0)


def test_open_webui_lists_the_collections_as_models(platform: Platform, manual: dict[str, Any]) -> None:
    assert platform.secrets is not None
    # What Open WebUI sends on start (backend/open_webui/routers/openai.py, `send_get_request`),
    # forwarded-user headers included.
    headers = {
        "Authorization": f"Bearer {platform.secrets.admin_api_key}",
        "Content-Type": "application/json",
        "X-OpenWebUI-User-Name": "Ada",
        "X-OpenWebUI-User-Id": "a1",
        "X-OpenWebUI-User-Email": "ada@example.com",
        "X-OpenWebUI-User-Role": "admin",
    }
    listed = httpx.get(f"{platform.gateway_url}/v1/models", headers=headers, timeout=30)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["object"] == "list"
    ours = [model for model in body["data"] if model["parley"]["collection_id"] == manual["id"]]
    assert [model["id"] for model in ours] == [f"parley/{manual['name']}"]
    assert ours[0]["object"] == "model" and ours[0]["owned_by"] == "parley" and ours[0]["created"] > 0


def test_the_sdk_lists_and_retrieves_models(client: openai.OpenAI, manual: dict[str, Any]) -> None:
    ids = [model.id for model in client.models.list()]
    assert f"parley/{manual['name']}" in ids
    assert client.models.retrieve(f"parley/{manual['name']}").id == f"parley/{manual['name']}"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("parley/no-such-collection")


def test_a_whole_answer_cites_its_sources_and_continues_by_conversation_id(
    client: openai.OpenAI, api: httpx.Client, manual: dict[str, Any]
) -> None:
    answer = client.chat.completions.create(
        model=f"parley/{manual['name']}",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}],
        max_tokens=200,
        temperature=0.2,
        user="ada",
    )
    message = answer.choices[0].message
    assert message.role == "assistant" and "200 shots" in (message.content or "")
    assert "[1]" in (message.content or "")
    citations = (message.model_extra or {})["citations"]
    assert citations[0]["index"] == 1 and citations[0]["document_title"]
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    conversation_id = (answer.model_extra or {})["conversation_id"]

    again = client.chat.completions.create(
        model="parley",
        messages=[{"role": "user", "content": "And what should I rinse with?"}],
        extra_body={"conversation_id": conversation_id},
    )
    assert (again.model_extra or {})["conversation_id"] == conversation_id
    stored = api.get(f"/v1/conversations/{conversation_id}").json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "user", "assistant"]
    # Usage is Parley's metered usage: what the stored answer says it used.
    assert stored["messages"][1]["usage"]["output_tokens"] == answer.usage.completion_tokens


def test_a_streamed_answer_ends_with_citations_and_usage(client: openai.OpenAI, manual: dict[str, Any]) -> None:
    stream = client.chat.completions.create(
        model=f"parley/{manual['name']}",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert "200 shots" in text and "[1]" in text
    final = next(chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason)
    assert final.choices[0].finish_reason == "stop"
    assert (final.choices[0].delta.model_extra or {})["citations"][0]["index"] == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all(chunk.id == chunks[0].id for chunk in chunks)


def test_the_async_client_streams_and_a_stop_sequence_cuts_the_answer(
    platform: Platform, client: openai.OpenAI, manual: dict[str, Any]
) -> None:
    whole = client.chat.completions.create(
        model=f"parley/{manual['name']}", messages=[{"role": "user", "content": QUESTION}]
    )
    content = whole.choices[0].message.content or ""
    stop = "citric"
    assert stop in content

    async def streamed() -> tuple[str, str | None]:
        assert platform.secrets is not None
        async with openai.AsyncOpenAI(
            base_url=f"{platform.gateway_url}/v1", api_key=platform.secrets.admin_api_key, max_retries=0
        ) as client:
            stream = await client.chat.completions.create(
                model=f"parley/{manual['name']}",
                messages=[{"role": "user", "content": QUESTION}],
                stream=True,
                stop=[stop],
            )
            text, reason = "", None
            async for chunk in stream:
                text += chunk.choices[0].delta.content or ""
                reason = chunk.choices[0].finish_reason or reason
            return text, reason

    text, reason = asyncio.run(streamed())
    assert text == content[: content.index(stop)]
    assert reason == "stop"


def test_max_tokens_cuts_the_answer_at_length(client: openai.OpenAI, manual: dict[str, Any]) -> None:
    answer = client.chat.completions.create(
        model=f"parley/{manual['name']}",
        messages=[{"role": "user", "content": QUESTION}],
        max_completion_tokens=3,
    )
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens <= 3


def test_errors_are_in_openai_shape(client: openai.OpenAI, platform: Platform, manual: dict[str, Any]) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="parley/nowhere", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    assert isinstance(missing.value.body, dict) and missing.value.body["type"] == "not_found_error"

    with pytest.raises(openai.BadRequestError) as two:
        client.chat.completions.create(
            model=f"parley/{manual['name']}", messages=[{"role": "user", "content": "hi"}], n=2
        )
    assert two.value.body is not None and two.value.type == "invalid_request_error"

    stranger = openai.OpenAI(base_url=f"{platform.gateway_url}/v1", api_key="pk_not_a_key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        stranger.models.list()
    assert refused.value.type == "authentication_error"


def test_embeddings_come_from_the_collections_embedder(
    client: openai.OpenAI, api: httpx.Client, manual: dict[str, Any]
) -> None:
    text = f"descale with citric acid {uuid.uuid4().hex}"  # new to the cache: the model is called
    made = client.embeddings.create(model=f"parley/{manual['name']}", input=[text, "a burr grinder"])
    assert [item.index for item in made.data] == [0, 1]
    dimensions = len(made.data[0].embedding)
    assert dimensions > 0 and len(made.data[1].embedding) == dimensions
    assert made.usage.prompt_tokens > 0
    # The same text as floats (the SDK asked for base64) is the same vector, from the cache: no tokens.
    again = api.post("/v1/embeddings", json={"model": f"parley/{manual['name']}", "input": text})
    assert again.status_code == 200, again.text
    assert again.json()["data"][0]["embedding"] == pytest.approx(made.data[0].embedding, rel=1e-6)
    assert again.json()["usage"]["prompt_tokens"] == 0

    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=f"parley/{manual['name']}", input="x", dimensions=dimensions + 1)
