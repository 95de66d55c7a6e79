"""Gateway fixtures: its schema on the real PostgreSQL and the app over a real ASGI transport."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.gateway
from parley.gateway.api.deps import Services
from parley.gateway.app import create_app
from parley.gateway.clients import Backends
from parley.gateway.config import Settings
from parley.kit import db
from parley.kit.devstack import free_port
from parley.kit.testing import Infra

PEPPER = "test-pepper-5b1f"


@pytest.fixture(scope="session")
def pepper() -> str:
    return PEPPER


@pytest_asyncio.fixture(scope="session")
async def sessions(engine: AsyncEngine) -> db.Sessions:
    await db.migrate(engine, schema="gateway", migrations=Path(parley.gateway.__file__).parent / "migrations")
    return db.session_factory(engine)


@pytest_asyncio.fixture(scope="session")
async def gateway(infra: Infra, sessions: db.Sessions, nats_client) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app with its backends pointing at a port where nothing listens."""
    nowhere = f"127.0.0.1:{free_port()}"
    settings = Settings(
        env="test",
        database_url=infra.database_url,
        nats_url=infra.nats_url,
        ingestion_target=nowhere,
        chat_target=nowhere,
        usage_target=nowhere,
        api_key_pepper=PEPPER,
        call_deadline_seconds=2,
        max_upload_bytes=64 * 1024,
    )
    backends = Backends(ingestion_target=nowhere, chat_target=nowhere, usage_target=nowhere, deadline_seconds=2)
    app = create_app(Services(settings, sessions, backends, nats_client, nats_client.jetstream(), backends.chat))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client
    await backends.close()
