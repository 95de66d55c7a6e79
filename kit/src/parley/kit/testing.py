"""A pytest plugin (registered by parley-kit): real PostgreSQL and NATS, started once per session.

Tests talk to the same servers `make run` uses, never to mocks. Set PARLEY_TEST_DATABASE_URL
and PARLEY_TEST_NATS_URL to point the tests at servers you already run instead.
Each test isolates itself with tenant ids of its own (`tenant_id` fixture).
"""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.kit import bus, db
from parley.kit.devstack import EmbeddedNats, EmbeddedPostgres, free_port
from parley.kit.identity import Identity, Signer
from parley.kit.rpc import AddServicer, GrpcServer, open_channel

# The internal secret of every service a test starts (settings' `internal_secret`).
TEST_INTERNAL_SECRET = "test-internal-secret-9c2e"
TEST_SIGNER = Signer(TEST_INTERNAL_SECRET)


def pytest_configure(config: pytest.Config) -> None:
    # Every service Settings a test builds signs and verifies with the test's secret, as the
    # services of one deployment share theirs; the kit's test servers use the same (TEST_SIGNER).
    os.environ.setdefault("PARLEY_INTERNAL_SECRET", TEST_INTERNAL_SECRET)


def signed(identity: Identity) -> tuple[tuple[str, str], ...]:
    """The metadata a service sends for `identity`, signed as the test's services expect."""
    return TEST_SIGNER.metadata(identity)


@dataclass(frozen=True, slots=True)
class Infra:
    database_url: str
    nats_url: str


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    database_url = os.environ.get("PARLEY_TEST_DATABASE_URL", "")
    nats_url = os.environ.get("PARLEY_TEST_NATS_URL", "")
    root = tmp_path_factory.mktemp("infra")
    postgres = None if database_url else EmbeddedPostgres(root / "postgres")
    nats = None if nats_url else EmbeddedNats(root / "nats", port=free_port())
    try:
        if postgres is not None:
            database_url = postgres.start()
        if nats is not None:
            nats_url = nats.start()
        yield Infra(database_url=database_url, nats_url=nats_url)
    finally:
        if nats is not None:
            nats.stop()
        if postgres is not None:
            postgres.stop()


@pytest_asyncio.fixture(scope="session")
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    created = db.create_engine(infra.database_url)
    yield created
    await created.dispose()


@pytest_asyncio.fixture(scope="session")
async def nats_client(infra: Infra) -> AsyncIterator[NatsClient]:
    client = await bus.connect(infra.nats_url, name="parley-tests")
    await bus.ensure_streams(client.jetstream())
    yield client
    await client.drain()


@asynccontextmanager
async def serving(add_servicer: AddServicer, servicer: object, service_name: str) -> AsyncIterator[grpc.aio.Channel]:
    """A servicer on a real gRPC server (the kit's, with its interceptor) on a free loopback port,
    and a channel to it."""
    server = GrpcServer(port=0, host="127.0.0.1", signer=TEST_SIGNER)
    server.add(add_servicer, servicer, service_name)
    await server.start()
    try:
        async with open_channel(f"127.0.0.1:{server.port}") as channel:
            yield channel
    finally:
        await server.stop(0)


@pytest.fixture
def tenant_id() -> str:
    """A tenant of the test's own: nothing another test stores is visible to it."""
    return str(uuid.uuid4())
