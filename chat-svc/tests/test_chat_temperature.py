"""A turn's `temperature` (StartTurn) reaches the model: the OpenAI API is sent it as asked, over
real gRPC and the official SDK against the HTTP fake; Anthropic's API (which takes no sampling
parameters) and `local` are not; out of 0-2 is refused before anything is held."""

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient

from parley.chat import grpc_api
from parley.chat.completions import Completions
from parley.chat.config import Settings
from parley.chat.metering import Meter
from parley.chat.models import outbox
from parley.chat.providers import AnthropicProvider, LocalProvider, OpenAIProvider
from parley.kit import db
from parley.kit.outbox import OutboxRelay
from parley.kit.rpc import GrpcServer
from parley.kit.testing import TEST_SIGNER, signed
from parley.v1 import chat_pb2, chat_pb2_grpc
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

from .test_chat_turns import StartedTurn, harness, read_turn

Api = tuple[chat_pb2_grpc.ChatServiceStub, tuple[tuple[str, str], ...], str]


@pytest_asyncio.fixture
async def chat_api(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    claude: AnthropicProvider,
    gpt: OpenAIProvider,
) -> AsyncIterator[Api]:
    """chat-svc's gRPC API with Claude and GPT (SDKs on the fakes) beside `local`."""
    h = await harness(settings, sessions, nats_client, remote={"anthropic": claude, "openai": gpt})
    server = GrpcServer(port=0, host="127.0.0.1", signer=TEST_SIGNER)
    relay = OutboxRelay(sessions=sessions, table=outbox, js=nats_client.jetstream())
    completions = Completions(
        providers={"local": LocalProvider()},
        default=(LocalProvider(), "local"),
        default_max_tokens=settings.default_max_tokens,
        budget=h.budget,
        meter=Meter(sessions=sessions, relay=relay),
    )
    api = grpc_api.ChatApi(turns=h.runner, conversations=h.conversations, completions=completions)
    server.add(chat_pb2_grpc.add_ChatServiceServicer_to_server, api, "parley.v1.ChatService")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield chat_pb2_grpc.ChatServiceStub(channel), signed(h.identity), h.collection_id
    finally:
        await channel.close()
        await server.stop(0)


async def ask(api: Api, nats_client: NatsClient, provider: str, **temperature: float) -> None:
    stub, metadata, collection_id = api
    request = chat_pb2.StartTurnRequest(
        collection_ids=[collection_id], message="How often should I descale?", provider=provider, **temperature
    )
    started = await stub.StartTurn(request, metadata=metadata, timeout=10)
    events = await read_turn(nats_client, StartedTurn(started.conversation_id, started.turn_id))
    assert events[-1].WhichOneof("kind") == "end", events[-1]


async def test_the_openai_api_is_sent_the_temperature_asked_for(
    chat_api: Api, nats_client: NatsClient, openai_fake: FakeOpenAI
) -> None:
    await ask(chat_api, nats_client, "openai", temperature=0.3)
    assert openai_fake.received[-1].body["temperature"] == 0.3
    await ask(chat_api, nats_client, "openai", temperature=0)
    assert openai_fake.received[-1].body["temperature"] == 0  # zero is asked for, not unset
    await ask(chat_api, nats_client, "openai")
    assert "temperature" not in openai_fake.received[-1].body  # unset: the model's default


async def test_claude_is_not_sent_a_temperature(
    chat_api: Api, nats_client: NatsClient, anthropic_fake: FakeAnthropic
) -> None:
    await ask(chat_api, nats_client, "anthropic", temperature=0.3)
    assert "temperature" not in anthropic_fake.received[-1].body


@pytest.mark.parametrize("temperature", [-0.1, 2.01, float("nan")])
async def test_a_temperature_outside_0_to_2_is_refused(chat_api: Api, temperature: float) -> None:
    stub, metadata, collection_id = chat_api
    request = chat_pb2.StartTurnRequest(
        collection_ids=[collection_id], message="How often?", provider="openai", temperature=temperature
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.StartTurn(request, metadata=metadata, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "temperature" in str(refused.value.details())
