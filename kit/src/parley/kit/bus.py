"""NATS JetStream: the connection, the streams of docs/architecture.md, and durable consumers.

Every consumer is durable and pulls; its handler commits its own transaction and the loop
acks only after the handler returns, so a crash means redelivery, never loss. A message
whose `max_deliver`-th delivery fails (or that comes back after it, from a process that died
mid-way) is parked on `parked.<stream>.<consumer>` with the reason, and terminated, so one
poison message cannot block the rest. Operators list parked messages (`parked_messages`) and
put one back on its subject (`replay_parked`).

NATS may restart (memory streams gone) or fail over to a server that knows none of our streams
and consumers. Every connection re-declares the streams each time it reconnects
(`connect`'s reconnect hook, retried until JetStream answers), and a consumer whose fetch fails
subscribes again, which re-creates its durable: a service serves again without a restart.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RawStreamMsg,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from prometheus_client import Counter
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from parley.kit.contracts import parked_subject

log = logging.getLogger(__name__)

DAY = 24 * 3600.0
PARKED_STREAM = "PARKED"
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
    StreamConfig(name=PARKED_STREAM, subjects=["parked.>"], storage=StorageType.FILE, max_age=30 * DAY),
)


events_handled = Counter(
    "parley_events_handled_total", "Messages a durable consumer finished, by outcome", ["consumer", "outcome"]
)

Handler = Callable[[Msg], Awaitable[None]]
# Told when a message is parked, with why: the owner can mark its work failed meanwhile.
ParkHook = Callable[[Msg, str], Awaitable[None]]
# Headers of a parked message: what it was, how often it was tried, and why it was given up.
PARKED_SUBJECT_HEADER = "Parley-Subject"
PARKED_DELIVERIES_HEADER = "Parley-Deliveries"
PARKED_REASON_HEADER = "Parley-Reason"
MAX_REASON_CHARS = 500


# After a reconnect JetStream may still be recovering its store (503s): keep trying this long.
REDECLARE_WITHIN_SECONDS = 120.0
streams_redeclared = Counter(
    "parley_nats_streams_redeclared_total", "Times the streams were declared again after NATS reconnected"
)


async def connect(url: str, *, name: str, connect_within: float = 30.0, request_timeout: float = 10.0) -> NatsClient:
    """Connect, retrying for a while: in Kubernetes the server may come up after us. Every
    reconnect declares the streams again (`redeclare_streams`): a restarted NATS has lost its
    memory streams, a fresh one (failover to an empty server) all of them."""
    holder: list[NatsClient] = []
    redeclaring: set[asyncio.Task[None]] = set()

    async def on_reconnected() -> None:
        # Not awaited here: the client's reconnect path waits for this callback, and the
        # declarations need that path to have finished.
        task = asyncio.create_task(redeclare_streams(holder[0].jetstream(timeout=request_timeout)))
        redeclaring.add(task)
        task.add_done_callback(redeclaring.discard)

    async def on_disconnected() -> None:
        log.warning("lost the NATS connection; reconnecting", extra={"fields": {"client": name}})

    async for attempt in AsyncRetrying(
        stop=stop_after_delay(connect_within),
        wait=wait_exponential(multiplier=0.2, max=2),
        retry=retry_if_exception_type((OSError, NatsTimeoutError, nats.errors.NoServersError)),
        reraise=True,
    ):
        with attempt:
            client = await nats.connect(
                url,
                name=name,
                connect_timeout=5,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                reconnected_cb=on_reconnected,
                disconnected_cb=on_disconnected,
            )
            holder.append(client)
            return client
    raise AssertionError("unreachable")


async def ensure_streams(js: JetStreamContext) -> None:
    for config in STREAMS:
        try:
            await js.add_stream(config)
        except BadRequestError:
            # It exists with another configuration: bring it to ours.
            await js.update_stream(config)


async def redeclare_streams(js: JetStreamContext, *, within: float = REDECLARE_WITHIN_SECONDS) -> None:
    """`ensure_streams` until JetStream takes it (a restarted server answers 503 while it reads its
    store back); logged, never raised: the next reconnect, or a consumer's next fetch, tries again."""
    deadline = asyncio.get_running_loop().time() + within
    delay = 0.2
    while True:
        try:
            await ensure_streams(js)
        except Exception as error:
            if asyncio.get_running_loop().time() + delay > deadline:
                log.exception("could not declare the streams again after NATS came back")
                return
            log.info("JetStream not ready yet (%s); declaring the streams again in %.1fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        streams_redeclared.inc()
        log.warning("NATS came back: declared the streams again")
        return


@dataclass(frozen=True, slots=True)
class Consumer:
    stream: str
    durable: str
    subject: str
    handler: Handler
    max_deliver: int = 5
    ack_wait_seconds: float = 60.0
    batch: int = 10
    on_parked: ParkHook | None = None
    # Messages of a fetched batch handled at once. 1 keeps their order; more is for handlers whose
    # effects do not depend on it (e.g. version-checked upserts), to overlap one's I/O with
    # another's CPU.
    concurrency: int = 1


async def subscribe(js: JetStreamContext, consumer: Consumer) -> JetStreamContext.PullSubscription:
    """The consumer's durable pull subscription (created on first use)."""
    return await js.pull_subscribe(
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


async def run_consumer(js: JetStreamContext, consumer: Consumer, stop: asyncio.Event) -> None:
    subscription = await subscribe(js, consumer)
    try:
        while not stop.is_set():
            try:
                messages = await subscription.fetch(consumer.batch, timeout=1.0)
            except (TimeoutError, NatsTimeoutError):  # nats-py raises either when nothing is waiting
                continue
            except Exception:
                log.exception("fetch failed", extra={"fields": {"consumer": consumer.durable}})
                await asyncio.sleep(1.0)
                subscription = await resubscribe(js, consumer, subscription)
                continue
            await _handle_batch(js, consumer, messages)
    finally:
        # An open pull subscription makes the connection's drain wait out its whole timeout.
        await subscription.unsubscribe()


async def resubscribe(
    js: JetStreamContext, consumer: Consumer, subscription: JetStreamContext.PullSubscription
) -> JetStreamContext.PullSubscription:
    """After a failed fetch: the same durable again, declared again (and its stream) if NATS lost
    them; the old subscription when NATS is still away (the next failure tries again)."""
    try:
        try:
            fresh = await subscribe(js, consumer)
        except (NotFoundError, ServiceUnavailableError):
            await ensure_streams(js)
            fresh = await subscribe(js, consumer)
    except Exception as error:  # noqa: BLE001 - NATS still away: said, and tried after the next failed fetch
        log.warning("could not subscribe again yet: %s", error, extra={"fields": {"consumer": consumer.durable}})
        return subscription
    with contextlib.suppress(Exception):
        await subscription.unsubscribe()
    return fresh


async def _handle_batch(js: JetStreamContext, consumer: Consumer, messages: list[Msg]) -> None:
    if consumer.concurrency <= 1:
        for message in messages:
            await handle(js, consumer, message)
        return
    slots = asyncio.Semaphore(consumer.concurrency)

    async def handle_in_turn(message: Msg) -> None:
        async with slots:
            await handle(js, consumer, message)

    await asyncio.gather(*(handle_in_turn(message) for message in messages))


async def handle(js: JetStreamContext, consumer: Consumer, message: Msg) -> None:
    """Run the handler on one message: ack it, redeliver it later, or park it."""
    deliveries = message.metadata.num_delivered or 1
    if deliveries > consumer.max_deliver:
        # Its last delivery never finished (the process died mid-way): no exception to tell.
        await _park(js, consumer, message, f"delivered {deliveries - 1} times without finishing", deliveries)
        return
    try:
        await consumer.handler(message)
    except Exception as error:
        if deliveries >= consumer.max_deliver:
            log.exception(
                "handler failed for the last time",
                extra={"fields": {"consumer": consumer.durable, "subject": message.subject, "deliveries": deliveries}},
            )
            await _park(js, consumer, message, f"{type(error).__name__}: {error}", deliveries)
            return
        log.exception(
            "handler failed; will redeliver",
            extra={"fields": {"consumer": consumer.durable, "subject": message.subject, "deliveries": deliveries}},
        )
        await message.nak(delay=min(2.0**deliveries, 30.0))
        events_handled.labels(consumer.durable, "failed").inc()
        return
    await message.ack()
    events_handled.labels(consumer.durable, "ok").inc()


async def _park(js: JetStreamContext, consumer: Consumer, message: Msg, reason: str, deliveries: int) -> None:
    reason = " ".join(reason.split())[:MAX_REASON_CHARS]
    await js.publish(
        parked_subject(consumer.stream, consumer.durable),
        message.data,
        headers={
            PARKED_SUBJECT_HEADER: message.subject,
            PARKED_DELIVERIES_HEADER: str(deliveries),
            PARKED_REASON_HEADER: reason,
        },
    )
    await message.term()
    events_handled.labels(consumer.durable, "parked").inc()
    log.error(
        "parked a message that kept failing",
        extra={"fields": {"consumer": consumer.durable, "subject": message.subject, "deliveries": deliveries}},
    )
    if consumer.on_parked is not None:
        try:
            await consumer.on_parked(message, reason)
        except Exception:
            # The message is parked either way; its owner's record of it is best effort.
            log.exception("the parking hook failed", extra={"fields": {"consumer": consumer.durable}})


@dataclass(frozen=True, slots=True)
class ParkedMessage:
    seq: int  # in the PARKED stream: what an operator names to replay it
    durable: str  # the consumer that gave up on it
    subject: str  # where it was published, and where a replay puts it back
    deliveries: int
    reason: str
    parked_at: datetime
    data: bytes


def _parked(raw: RawStreamMsg, *, durable: str) -> ParkedMessage:
    headers: dict[str, str] = raw.headers or {}
    return ParkedMessage(
        seq=raw.seq or 0,
        durable=durable,
        subject=headers.get(PARKED_SUBJECT_HEADER, ""),
        deliveries=int(headers.get(PARKED_DELIVERIES_HEADER, "0") or 0),
        reason=headers.get(PARKED_REASON_HEADER, ""),
        parked_at=raw.time or datetime.fromtimestamp(0).astimezone(),
        data=raw.data or b"",
    )


async def parked_messages(
    js: JetStreamContext, *, stream: str, durables: Sequence[str], limit: int = 1000
) -> list[ParkedMessage]:
    """What the given consumers of `stream` parked and nobody replayed yet, oldest first."""
    found: list[ParkedMessage] = []
    for durable in durables:
        seq = 1
        while len(found) < limit * len(durables):
            try:
                raw = await js.get_msg(PARKED_STREAM, seq=seq, subject=parked_subject(stream, durable), next=True)
            except NotFoundError:
                break
            found.append(_parked(raw, durable=durable))
            seq = found[-1].seq + 1
    return sorted(found, key=lambda parked: parked.seq)[:limit]


async def all_parked(js: JetStreamContext, *, limit: int = 10_000) -> list[ParkedMessage]:
    """Everything every consumer parked and nobody replayed yet, oldest first (at most `limit`)."""
    found: list[ParkedMessage] = []
    seq = 1
    while len(found) < limit:
        try:
            raw = await js.get_msg(PARKED_STREAM, seq=seq, subject="parked.>", next=True)
        except NotFoundError:
            break
        found.append(_parked(raw, durable=(raw.subject or "").rsplit(".", 1)[-1]))
        seq = found[-1].seq + 1
    return found


async def get_parked(js: JetStreamContext, seq: int) -> ParkedMessage | None:
    try:
        raw = await js.get_msg(PARKED_STREAM, seq=seq)
    except NotFoundError:
        return None
    durable = (raw.subject or "").rsplit(".", 1)[-1]
    return _parked(raw, durable=durable)


async def replay_parked(js: JetStreamContext, parked: ParkedMessage) -> None:
    """Put a parked message back on its subject for a fresh round of deliveries, and unpark it."""
    # Its own message id: the original's may still be inside the stream's duplicate window.
    await js.publish(parked.subject, parked.data, headers={"Nats-Msg-Id": f"replay:{parked.seq}"})
    await js.delete_msg(PARKED_STREAM, parked.seq)
