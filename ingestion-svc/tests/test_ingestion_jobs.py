"""The ingest worker's order, on the session's real NATS: urgent jobs before normal before low,
whatever order they were queued in."""

import asyncio
import uuid

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import RetentionPolicy, StreamConfig

from parley.ingestion import events
from parley.kit import bus


async def test_an_urgent_job_queued_after_low_ones_is_taken_first(nats_client: NatsClient) -> None:
    js = nats_client.jetstream()
    # A queue of its own: JOBS is a work queue whose subjects the session's worker already consumes.
    stream = f"PRIORITIES{uuid.uuid4().hex[:8].upper()}"
    prefix = stream.lower()
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"], retention=RetentionPolicy.WORK_QUEUE))
    taken: list[str] = []
    all_taken = asyncio.Event()

    async def record(message: Msg) -> None:
        taken.append(message.data.decode())
        if len(taken) == 5:
            all_taken.set()

    consumers = [
        bus.Consumer(stream=stream, durable=f"{prefix}-{priority}", subject=f"{prefix}.{priority}", handler=record)
        for priority in ("urgent", "normal", "low")
    ]
    try:
        # The worker is not running yet (a busy or paused worker): the jobs wait in their queues.
        for name, priority in [("low-1", "low"), ("low-2", "low"), ("normal-1", "normal"), ("low-3", "low")]:
            await js.publish(f"{prefix}.{priority}", name.encode())
        await js.publish(f"{prefix}.urgent", b"urgent-1")

        stop = asyncio.Event()
        worker = asyncio.create_task(events.run_by_priority(js, consumers, stop))
        await asyncio.wait_for(all_taken.wait(), timeout=20)
        stop.set()
        await worker
    finally:
        await js.delete_stream(stream)

    assert taken == ["urgent-1", "normal-1", "low-1", "low-2", "low-3"]


async def test_the_single_consumer_of_before_priorities_is_retired_and_its_jobs_still_run(
    nats_client: NatsClient,
) -> None:
    js = nats_client.jetstream()
    stream = f"UPGRADE{uuid.uuid4().hex[:8].upper()}"
    prefix = stream.lower()
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"], retention=RetentionPolicy.WORK_QUEUE))
    taken: list[str] = []
    done = asyncio.Event()

    async def record(message: Msg) -> None:
        taken.append(message.data.decode())
        done.set()

    try:
        # A data folder from before priorities: one durable on every priority, a job it never finished.
        await js.pull_subscribe(f"{prefix}.>", durable=prefix, stream=stream)
        await js.publish(f"{prefix}.normal", b"queued-before-the-upgrade")
        consumers = [
            bus.Consumer(stream=stream, durable=f"{prefix}-{priority}", subject=f"{prefix}.{priority}", handler=record)
            for priority in ("urgent", "normal", "low")
        ]
        stop = asyncio.Event()
        worker = asyncio.create_task(events.run_by_priority(js, consumers, stop, retired_durable=prefix))
        await asyncio.wait_for(done.wait(), timeout=20)
        stop.set()
        await worker
        names = [info.name for info in await js.consumers_info(stream)]
    finally:
        await js.delete_stream(stream)

    assert taken == ["queued-before-the-upgrade"]
    assert prefix not in names
