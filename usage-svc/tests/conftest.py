"""usage-svc fixtures: its schema migrated once, its real gRPC server, and a real recorder consumer."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.usage
from parley.kit import bus, db
from parley.kit.testing import Infra, serving
from parley.usage import events
from parley.usage.config import Settings
from parley.usage.grpc_api import UsageApi
from parley.v1 import usage_pb2_grpc
from parley.v1.events_pb2 import UsageRecorded


@pytest_asyncio.fixture(scope="session")
async def sessions(engine: AsyncEngine) -> db.Sessions:
    await db.migrate(engine, schema="usage", migrations=Path(parley.usage.__file__).parent / "migrations")
    return db.session_factory(engine)


@pytest_asyncio.fixture(scope="session")
async def usage_stub(infra: Infra, sessions: db.Sessions) -> AsyncIterator[usage_pb2_grpc.UsageServiceStub]:
    settings = Settings(database_url=infra.database_url, nats_url=infra.nats_url, env="test")
    api = UsageApi(sessions, settings)
    async with serving(usage_pb2_grpc.add_UsageServiceServicer_to_server, api, "parley.v1.UsageService") as channel:
        yield usage_pb2_grpc.UsageServiceStub(channel)


@pytest_asyncio.fixture
async def recorded(infra: Infra, sessions: db.Sessions) -> AsyncIterator[Callable[..., Awaitable[None]]]:
    """Publish UsageRecorded events to JetStream and wait until a real `usage-recorder` consumer has
    handled every one of them (its ack floor reaches the last published sequence)."""
    # A connection of its own, closed after the test, so nothing of this consumer outlives it.
    nc = await bus.connect(infra.nats_url, name="parley-usage-tests")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    durable = f"usage-recorder-test-{uuid.uuid4().hex[:12]}"
    stop = asyncio.Event()
    consumer = events.recorder(sessions, durable=durable)
    task = asyncio.create_task(bus.run_consumer(js, consumer, stop))

    async def publish_and_wait(*messages: tuple[UsageRecorded, str]) -> None:
        last = 0
        for event, msg_id in messages:
            ack = await js.publish(events.USAGE_RECORDED, event.SerializeToString(), headers={"Nats-Msg-Id": msg_id})
            last = max(last, ack.seq)
        for _ in range(300):
            info = await js.consumer_info(events.USAGE_STREAM, durable)
            if info.ack_floor.stream_seq >= last and not info.num_ack_pending:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the recorder did not handle stream sequence {last}")

    try:
        yield publish_and_wait
    finally:
        stop.set()
        await task
        await js.delete_consumer(events.USAGE_STREAM, durable)
        await nc.close()
