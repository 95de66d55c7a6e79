"""chat-svc fixtures: its schema migrated once on the real PostgreSQL; the official Anthropic and
OpenAI SDKs pointed at HTTP fakes of their APIs (tests.fakes); and a real usage-svc (its gRPC
server and domain on its own schema) for the tests that bill through it. TurnRunners are built
on real PostgreSQL and NATS with in-test fakes of the services a turn calls (see test_chat_turns)."""

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.chat
import parley.usage
from parley.chat.clients import UsageClient
from parley.chat.config import Settings
from parley.chat.providers import AnthropicProvider, OpenAIProvider
from parley.kit import db
from parley.kit.rpc import GrpcServer
from parley.kit.testing import TEST_SIGNER, Infra
from parley.usage.budget import Budgets
from parley.usage.grpc_api import UsageApi
from parley.usage.prices import Prices
from parley.usage.recording import Recorder
from parley.usage.reports import Reports
from parley.v1 import usage_pb2_grpc
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI


@pytest_asyncio.fixture(scope="session")
async def sessions(engine: AsyncEngine) -> db.Sessions:
    await db.migrate(engine, schema="chat", migrations=Path(parley.chat.__file__).parent / "migrations")
    return db.session_factory(engine)


@pytest.fixture(scope="session")
def settings(infra: Infra) -> Settings:
    # The gRPC targets are never dialled: the tests hand TurnRunner fakes of those clients.
    return Settings(
        database_url=infra.database_url,
        nats_url=infra.nats_url,
        retrieval_target="unused:1",
        ingestion_target="unused:1",
        usage_target="unused:1",
        frame_seconds=0,
    )


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def claude(anthropic_fake: FakeAnthropic) -> AsyncIterator[AnthropicProvider]:
    """Claude Sonnet through the SDK, on a fake with no script and an empty cache."""
    anthropic_fake.reset()
    anthropic_fake.forget_cache()
    provider = AnthropicProvider(
        api_key=anthropic_fake.api_key, base_url=anthropic_fake.base_url, default_model="claude-sonnet-4-6"
    )
    yield provider
    await provider.close()


@pytest.fixture
async def gpt(openai_fake: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    """Model `gpt-x` through the OpenAI SDK, on a fake with no script and an empty cache."""
    openai_fake.reset()
    openai_fake.forget_cache()
    provider = OpenAIProvider(api_key=openai_fake.api_key, base_url=openai_fake.base_url, default_model="gpt-x")
    yield provider
    await provider.close()


@pytest_asyncio.fixture(scope="module")
async def usage_svc(engine: AsyncEngine) -> AsyncIterator[tuple[str, Budgets, Recorder]]:
    """A real usage-svc: its gRPC server and domain on its own schema; the test plays the relay."""
    await db.migrate(engine, schema="usage", migrations=Path(parley.usage.__file__).parent / "migrations")
    usage_sessions = db.session_factory(engine)
    budgets = Budgets(sessions=usage_sessions, reservation_ttl=timedelta(minutes=15))
    api = UsageApi(
        budgets=budgets,
        prices=Prices(sessions=usage_sessions),
        reports=Reports(sessions=usage_sessions, export_rows_per_chunk=500),
    )
    server = GrpcServer(port=0, host="127.0.0.1", signer=TEST_SIGNER)
    server.add(usage_pb2_grpc.add_UsageServiceServicer_to_server, api, "parley.v1.UsageService")
    await server.start()
    try:
        yield f"127.0.0.1:{server.port}", budgets, Recorder(sessions=usage_sessions)
    finally:
        await server.stop(0)


@pytest_asyncio.fixture
async def usage_client(usage_svc: tuple[str, Budgets, Recorder]) -> AsyncIterator[UsageClient]:
    """chat-svc's client of that usage-svc, closed after the test."""
    client = UsageClient(usage_svc[0], deadline_seconds=5, signer=TEST_SIGNER)
    yield client
    await client.close()
