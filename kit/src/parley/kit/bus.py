"""NATS JetStream: the connection, the streams of docs/architecture.md, and durable consumers.

Every consumer is durable and pulls; its handler commits its own transaction and the loop
acks only after the handler returns, so a crash means redelivery, never loss. A message
delivered `max_deliver` times without success is parked on `parked.<stream>.<consumer>`
and terminated, so one poison message cannot block the rest.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError
from prometheus_client import Counter
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from parley.kit.contracts import parked_subject

log = logging.getLogger(__name__)

DAY = 24 * 3600.0
MIB = 1024 * 1024

STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(name="DOCS", subjects=["docs.>"], storage=StorageType.FILE, max_age=7 * DAY, duplicate_window=300),
    StreamConfig(
        name="JOBS",
        subjects=["jobs.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=300,
    ),
    StreamConfig(
        name="PROGRESS", subjects=["progress.>"], storage=StorageType.MEMORY, max_age=3600, max_bytes=64 * MIB
    ),
    # Kept a while in memory so a client that reconnects can resume a turn from its last event id;
    # bounded, oldest first out, so a burst of turns cannot take the server's memory.
    StreamConfig(
        name="CHATSTREAM", subjects=["chat.stream.>"], storage=StorageType.MEMORY, max_age=3600, max_bytes=512 * MIB
    ),
    StreamConfig(name="USAGE", subjects=["usage.>"], storage=StorageType.FILE, max_age=30 * DAY, duplicate_window=600),
    StreamConfig(name="PARKED", subjects=["parked.>"], storage=StorageType.FILE, max_age=30 * DAY),
)


events_handled = Counter(
    "parley_events_handled_total", "Messages a durable consumer finished, by outcome", ["consumer", "outcome"]
)

Handler = Callable[[Msg], Awaitable[None]]


async def connect(url: str, *, name: str, connect_within: float = 30.0) -> NatsClient:
    """Connect, retrying for a while: in Kubernetes the server may come up after us."""
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(connect_within),
        wait=wait_exponential(multiplier=0.2, max=2),
        retry=retry_if_exception_type((OSError, NatsTimeoutError, nats.errors.NoServersError)),
        reraise=True,
    ):
        with attempt:
            return await nats.connect(
                url, name=name, connect_timeout=5, max_reconnect_attempts=-1, reconnect_time_wait=1
            )
    raise AssertionError("unreachable")


async def ensure_streams(js: JetStreamContext) -> None:
    for config in STREAMS:
        try:
            await js.add_stream(config)
        except BadRequestError:
            # It exists with another configuration: bring it to ours.
            await js.update_stream(config)


@dataclass(frozen=True, slots=True)
class Consumer:
    stream: str
    durable: str
    subject: str
    handler: Handler
    max_deliver: int = 5
    ack_wait_seconds: float = 60.0
    batch: int = 10


async def run_consumer(js: JetStreamContext, consumer: Consumer, stop: asyncio.Event) -> None:
    subscription = await js.pull_subscribe(
        consumer.subject,
        durable=consumer.durable,
        stream=consumer.stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=consumer.ack_wait_seconds,
            # Parking happens here, after max_deliver; the server must keep redelivering until then.
            max_deliver=-1,
        ),
    )
    try:
        while not stop.is_set():
            try:
                messages = await subscription.fetch(consumer.batch, timeout=1.0)
            except (TimeoutError, NatsTimeoutError):  # nats-py raises either when nothing is waiting
                continue
            except Exception:
                log.exception("fetch failed", extra={"fields": {"consumer": consumer.durable}})
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                await _handle(js, consumer, message)
    finally:
        # An open pull subscription makes the connection's drain wait out its whole timeout.
        await subscription.unsubscribe()


async def _handle(js: JetStreamContext, consumer: Consumer, message: Msg) -> None:
    deliveries = message.metadata.num_delivered or 1
    if deliveries > consumer.max_deliver:
        await js.publish(
            parked_subject(consumer.stream, consumer.durable),
            message.data,
            headers={"Parley-Subject": message.subject, "Parley-Deliveries": str(deliveries)},
        )
        await message.term()
        events_handled.labels(consumer.durable, "parked").inc()
        log.error(
            "parked a message that kept failing",
            extra={"fields": {"consumer": consumer.durable, "subject": message.subject, "deliveries": deliveries}},
        )
        return
    try:
        await consumer.handler(message)
    except Exception:
        log.exception(
            "handler failed; will redeliver",
            extra={"fields": {"consumer": consumer.durable, "subject": message.subject, "deliveries": deliveries}},
        )
        await message.nak(delay=min(2.0**deliveries, 30.0))
        events_handled.labels(consumer.durable, "failed").inc()
        return
    await message.ack()
    events_handled.labels(consumer.durable, "ok").inc()
