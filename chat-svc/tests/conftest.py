"""chat-svc fixtures: its schema migrated once on the real PostgreSQL, and TurnRunners built on
real PostgreSQL and NATS with in-test fakes of the services a turn calls (see test_chat_turns)."""

from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.chat
from parley.chat.config import Settings
from parley.kit import db
from parley.kit.testing import Infra


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
