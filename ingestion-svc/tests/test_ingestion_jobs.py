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
