"""Gateway fixtures: its schema on the real PostgreSQL and the app over a real ASGI transport."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.gateway
from parley.gateway.api.deps import Services
from parley.gateway.app import create_app
from parley.gateway.auth import Authenticator
from parley.gateway.clients import ChatBackend, Clients
from parley.gateway.config import Settings
from parley.kit import db
from parley.kit.devstack import free_port
from parley.kit.testing import TEST_SIGNER, Infra

PEPPER = "test-pepper-5b1f"


@pytest.fixture(scope="session")
def pepper() -> str:
    return PEPPER


@pytest_asyncio.fixture(scope="session")
async def sessions(engine: AsyncEngine) -> db.Sessions:
    await db.migrate(engine, schema="gateway", migrations=Path(parley.gateway.__file__).parent / "migrations")
    return db.session_factory(engine)


OpenGateway = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(scope="session")
def open_gateway(infra: Infra, sessions: db.Sessions, nats_client: NatsClient) -> OpenGateway:
    """Opens the gateway app over a real ASGI transport. Backends not given (`*_target`) point at a
    port where nothing listens; `chat` replaces the chat backend (a fake of its Protocol); `sessions`
    replaces the shared session factory (its `database_url` is then given too); other keywords
    are settings."""
    shared = sessions

    @asynccontextmanager
    async def open_app(
        *,
        chat: ChatBackend | None = None,
        sessions: db.Sessions | None = None,
        database_url: str = "",
        usage_target: str = "",
        ingestion_target: str = "",
        retrieval_target: str = "",
        **settings: Any,
    ) -> AsyncIterator[httpx.AsyncClient]:
        nowhere = f"127.0.0.1:{free_port()}"
        config = Settings(
            env="test",
            database_url=database_url or infra.database_url,
            nats_url=infra.nats_url,
            ingestion_target=ingestion_target or nowhere,
            chat_target=nowhere,
            usage_target=usage_target or nowhere,
            retrieval_target=retrieval_target or nowhere,
            api_key_pepper=PEPPER,
            call_deadline_seconds=2,
            **settings,
        )
        clients = Clients.open(
            ingestion_target=config.ingestion_target,
            retrieval_target=config.retrieval_target,
            chat_target=nowhere,
            usage_target=config.usage_target,
            deadline_seconds=2,
            signer=TEST_SIGNER,
        )
        services = Services(
            settings=config,
            sessions=sessions or shared,
            nc=nats_client,
            js=nats_client.jetstream(),
            authenticator=Authenticator.from_settings(config),
            ingestion=clients.ingestion,
            retrieval=clients.retrieval,
            chat=chat or clients.chat,
            usage=clients.usage,
        )
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(services)), base_url="http://gateway"
            ) as client:
                yield client
        finally:
            await clients.close()

    return open_app


@pytest_asyncio.fixture(scope="session")
async def gateway(open_gateway: OpenGateway) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app with every backend pointing at a port where nothing listens."""
    async with open_gateway(max_upload_bytes=64 * 1024) as client:
        yield client
