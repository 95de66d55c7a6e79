"""usage-svc fixtures: its schema migrated once, its real gRPC server, and a real recorder consumer."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.usage
from parley.kit import bus, db
from parley.kit.contracts import USAGE_RECORDED
from parley.kit.testing import Infra, serving
from parley.usage import events
from parley.usage.budget import Budgets
from parley.usage.config import Settings
from parley.usage.grpc_api import UsageApi
from parley.usage.prices import Prices
from parley.usage.recording import Recorder
from parley.usage.reports import Reports
from parley.v1 import usage_pb2_grpc
from parley.v1.events_pb2 import UsageRecorded


@pytest_asyncio.fixture(scope="session")
async def sessions(engine: AsyncEngine) -> db.Sessions:
    await db.migrate(engine, schema="usage", migrations=Path(parley.usage.__file__).parent / "migrations")
    return db.session_factory(engine)


@pytest.fixture(scope="session")
def settings(infra: Infra) -> Settings:
    return Settings(database_url=infra.database_url, nats_url=infra.nats_url, env="test")


@pytest.fixture(scope="session")
def budgets(sessions: db.Sessions, settings: Settings) -> Budgets:
    return Budgets(sessions=sessions, reservation_ttl=timedelta(seconds=settings.reservation_ttl_seconds))


@pytest.fixture(scope="session")
def recorder(sessions: db.Sessions) -> Recorder:
    return Recorder(sessions=sessions)


@pytest_asyncio.fixture(scope="session")
async def usage_stub(
    sessions: db.Sessions, settings: Settings, budgets: Budgets
) -> AsyncIterator[usage_pb2_grpc.UsageServiceStub]:
    api = UsageApi(
        budgets=budgets,
        prices=Prices(sessions=sessions),
        reports=Reports(sessions=sessions, export_rows_per_chunk=settings.export_rows_per_chunk),
    )
    async with serving(usage_pb2_grpc.add_UsageServiceServicer_to_server, api, "parley.v1.UsageService") as channel:
        yield usage_pb2_grpc.UsageServiceStub(channel)


@pytest_asyncio.fixture
async def recorded(infra: Infra, recorder: Recorder) -> AsyncIterator[Callable[..., Awaitable[None]]]:
    """Publish UsageRecorded events to JetStream and wait until a real `usage-recorder` consumer has
    handled every one of them (its ack floor reaches the last published sequence)."""
    # A connection of its own, closed after the test, so nothing of this consumer outlives it.
    nc = await bus.connect(infra.nats_url, name="parley-usage-tests")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    durable = f"usage-recorder-test-{uuid.uuid4().hex[:12]}"
    stop = asyncio.Event()
    consumer = events.recorder_consumer(recorder, durable=durable)
    task = asyncio.create_task(bus.run_consumer(js, consumer, stop))

    async def publish_and_wait(*messages: tuple[UsageRecorded, str]) -> None:
        last = 0
        for event, msg_id in messages:
            ack = await js.publish(USAGE_RECORDED, event.SerializeToString(), headers={"Nats-Msg-Id": msg_id})
            last = max(last, ack.seq)
        for _ in range(300):
            info = await js.consumer_info(events.STREAM, durable)
            if info.ack_floor.stream_seq >= last and not info.num_ack_pending:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the recorder did not handle stream sequence {last}")

    try:
        yield publish_and_wait
    finally:
        stop.set()
        await task
        await js.delete_consumer(events.STREAM, durable)
        await nc.close()
