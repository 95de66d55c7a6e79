"""The events of one chat turn, read from JetStream for an SSE client.

chat-svc publishes every event of a turn on `kit.contracts.turn_subject(conversation, turn)`
(TURN_STREAMS, stream CHATSTREAM); the stream
keeps them a while, so each client reads from the start (or after its Last-Event-ID) with an
ordered consumer of its own: any number of clients on any gateway replica see every event,
and a client that reconnects misses nothing.

A slow reader cannot hurt the others: each follower's buffer is its own subscription's, bounded
(`MAX_PENDING_EVENTS`, `MAX_PENDING_BYTES`: past them NATS drops what would be buffered). A
follower that falls that far behind its turn — its client reads slower than the answer is
written, long enough to fill it — is ended with `FollowerBehind`, and resumes with Last-Event-ID
from where it got to. A whole turn (8,192 tokens at most) fits the bounds many times over, so a
client that joins late and replays the turn from its start is never taken for a slow one.
"""

import json
import time
from collections.abc import AsyncIterator

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from parley.v1 import events_pb2

MAX_PENDING_EVENTS = 4_096
MAX_PENDING_BYTES = 4 * 1024 * 1024


class TurnIdle(Exception):
    """Nothing arrived from the turn for longer than its idle limit."""


class TurnStreamLost(NatsError):
    """The connection to NATS was lost and made again while reading: a restarted NATS has lost the
    turn's events (CHATSTREAM is in memory) and the reader's consumer with them."""


class FollowerBehind(Exception):
    """The follower's buffer is full: its client reads slower than the turn is written."""

    def __init__(self, last_seq: int) -> None:
        super().__init__(f"behind after event {last_seq}")
        self.last_seq = last_seq


def error_frame(code: str, message: str) -> dict[str, str]:
    """An SSE `error` event: once a stream has begun, an HTTP status can no longer say it."""
    return {"event": "error", "data": json.dumps({"code": code, "message": message})}


def is_terminal(event: events_pb2.TurnEvent) -> bool:
    return event.WhichOneof("kind") in ("end", "error")


async def turn_events(
    js: JetStreamContext,
    subject: str,
    *,
    after_seq: int = 0,
    idle_seconds: float,
    nc: NatsClient | None = None,
    max_pending_events: int = MAX_PENDING_EVENTS,
    max_pending_bytes: int = MAX_PENDING_BYTES,
) -> AsyncIterator[events_pb2.TurnEvent]:
    """Every event of the turn with seq > after_seq, in order, until its end or error;
    FollowerBehind when the reader let its buffer fill. With `nc`, TurnStreamLost as soon as it has
    reconnected, rather than the idle limit later."""
    reconnects = nc.stats["reconnects"] if nc is not None else 0
    subscription = await js.subscribe(
        subject,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
        pending_msgs_limit=max_pending_events,
        pending_bytes_limit=max_pending_bytes,
    )
    delivered = after_seq
    try:
        last_event_at = time.monotonic()
        while True:
            try:
                message = await subscription.next_msg(timeout=1.0)
            except (TimeoutError, NatsTimeoutError):
                if nc is not None and nc.stats["reconnects"] != reconnects:
                    raise TurnStreamLost(subject) from None
                if time.monotonic() - last_event_at > idle_seconds:
                    raise TurnIdle(subject) from None
                continue
            last_event_at = time.monotonic()
            # Counted with the message just taken: the buffer was full when it came, and NATS may
            # have dropped events after it, so this follower cannot go on in order; its client
            # resumes after the last event it was given.
            if (
                subscription.pending_msgs + 1 >= max_pending_events
                or subscription.pending_bytes + len(message.data) >= max_pending_bytes
            ):
                raise FollowerBehind(delivered)
            event = events_pb2.TurnEvent.FromString(message.data)
            if event.seq > delivered:
                delivered = event.seq
                yield event
            if is_terminal(event):
                return
    finally:
        await subscription.unsubscribe()
