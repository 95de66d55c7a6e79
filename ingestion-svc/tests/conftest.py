"""The ingestion service, for real: migrations on the session's PostgreSQL, the gRPC server on
a free port, the outbox relay and both consumers running against the session's NATS.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.ingestion
from parley.ingestion import events
from parley.ingestion.catalog import Collections
from parley.ingestion.config import Settings
from parley.ingestion.dead_letters import DeadLetters
from parley.ingestion.documents import Documents
from parley.ingestion.grpc_api import IngestionApi
from parley.ingestion.models import outbox
from parley.ingestion.pipeline import Pipeline
from parley.ingestion.progress import Progress
from parley.kit import bus, db
from parley.kit.outbox import OutboxRelay
from parley.kit.testing import Infra, serving
from parley.v1 import ingestion_pb2_grpc

# Small, so the oversize upload test sends little.
TEST_MAX_DOCUMENT_BYTES = 64 * 1024
TEST_INGEST_DURABLE = "test-ingestion-ingest"


@pytest_asyncio.fixture(scope="session")
async def ingestion(
    infra: Infra, engine: AsyncEngine, nats_client: NatsClient
) -> AsyncIterator[ingestion_pb2_grpc.IngestionServiceStub]:
    """A stub of the running service; callers pass identity metadata themselves."""
    await db.migrate(engine, schema="ingestion", migrations=Path(parley.ingestion.__file__).parent / "migrations")
    settings = Settings(
        env="test",
        database_url=infra.database_url,
        nats_url=infra.nats_url,
        max_document_bytes=TEST_MAX_DOCUMENT_BYTES,
    )
    sessions = db.session_factory(engine)
    js = nats_client.jetstream()
    stop = asyncio.Event()
    relay = OutboxRelay(sessions=sessions, table=outbox, js=js, poll_seconds=0.2)
    progress = Progress(sessions=sessions, js=js)
    documents = Documents(sessions=sessions, progress=progress, settings=settings, notify_outbox=relay.notify)
    pipeline = Pipeline(sessions=sessions, progress=progress, settings=settings, notify_outbox=relay.notify)
    collections = Collections(sessions=sessions, notify_outbox=relay.notify)
    dead_letters = DeadLetters(
        js=js, pipeline=pipeline, stream=events.JOBS_STREAM, durables=events.ingest_durables(TEST_INGEST_DURABLE)
    )
    tasks = [
        asyncio.create_task(relay.run(stop)),
        asyncio.create_task(
            events.run_by_priority(js, events.ingest_consumers(pipeline, durable_prefix=TEST_INGEST_DURABLE), stop)
        ),
        asyncio.create_task(
            bus.run_consumer(js, events.indexed_consumer(pipeline, durable="test-ingestion-indexed"), stop)
        ),
    ]
    api = IngestionApi(collections=collections, documents=documents, progress=progress, dead_letters=dead_letters)
    try:
        async with serving(
            ingestion_pb2_grpc.add_IngestionServiceServicer_to_server, api, "parley.v1.IngestionService"
        ) as channel:
            yield ingestion_pb2_grpc.IngestionServiceStub(channel)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
