"""The events of one chat turn, read from JetStream for its SSE clients.

chat-svc publishes every event of a turn on `kit.contracts.turn_subject(conversation, turn)`
(TURN_STREAMS, stream CHATSTREAM); the stream keeps them a while, so any number of clients on any
gateway replica see every event, and a client that reconnects with Last-Event-ID misses nothing.

Within one gateway process a turn is read from JetStream once (`TurnFeeds`): the first follower
of a turn opens a `TurnFeed`, one ordered consumer whose events are kept in one shared, bounded
list, and every follower reads that list at its own index. The consumer ends when the turn ends
(its `end` or `error` event) or its last follower leaves; the list goes when the last follower
leaves. A thousand browser tabs on one answer cost one consumer and one copy of the events.

A slow reader cannot hurt the others: the feed never waits for a follower. The list keeps the
newest `MAX_KEPT_EVENTS` events (and `MAX_KEPT_BYTES` of them); a follower whose next event has
been dropped from it — its client reads slower than the answer is written, for that long — is
ended with `FollowerBehind` and resumes with Last-Event-ID from where it got to. A whole turn
(8,192 tokens at most) fits the bounds many times over, so a follower that joins late replays
the turn from the list; one that needs events the list no longer holds (or joins when no other
follower is reading) replays them from the stream.
"""

import asyncio
import bisect
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from prometheus_client import Counter, Gauge

from parley.v1 import events_pb2

log = logging.getLogger(__name__)

R = TypeVar("R")

turn_consumers = Gauge(
    "parley_gateway_turn_consumers", "Chat turns this process reads from JetStream, one consumer each"
)
turn_followers = Gauge("parley_gateway_turn_followers", "Clients following a chat turn's events on this process")
followers_behind = Counter(
    "parley_gateway_turn_followers_behind_total", "Followers ended for reading slower than their turn was written"
)

MAX_KEPT_EVENTS = 4_096
MAX_KEPT_BYTES = 4 * 1024 * 1024
# What NATS may buffer for a feed's consumer before the feed takes it (the feed takes at once).
MAX_PENDING_EVENTS = MAX_KEPT_EVENTS
MAX_PENDING_BYTES = MAX_KEPT_BYTES


class TurnIdle(Exception):
    """Nothing arrived from the turn for longer than its idle limit."""


class TurnStreamLost(NatsError):
    """The connection to NATS was lost and made again while reading: a restarted NATS has lost the
    turn's events (CHATSTREAM is in memory) and the reader's consumer with them."""


class FollowerBehind(Exception):
    """The follower's next event is gone from the turn's list: its client reads slower than the
    turn is written."""

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
    """Every event of the turn with seq > after_seq, in order, until its end or error, read with
    an ordered consumer of this reader's own (a feed's, or a follower replaying what no feed
    holds); FollowerBehind when the reader let NATS's buffer fill. With `nc`, TurnStreamLost as
    soon as it has reconnected, rather than the idle limit later."""
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
            # have dropped events after it, so this reader cannot go on in order; it resumes
            # after the last event it was given.
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


@dataclass(frozen=True, slots=True)
class FeedLimits:
    """How much of a turn a feed keeps, and how long it waits for the turn's next event."""

    idle_seconds: float
    max_events: int = MAX_KEPT_EVENTS
    max_bytes: int = MAX_KEPT_BYTES


class TurnFeed:
    """One turn's events, read once from JetStream and kept for every follower in this process.

    `_events` holds the newest events (seqs rising); `_dropped` counts those let go from its
    front, so an event's place in the turn (its index) stays fixed while the list slides."""

    def __init__(self, js: JetStreamContext, subject: str, limits: FeedLimits, nc: NatsClient | None) -> None:
        self.subject = subject
        self._limits = limits
        self._events: deque[events_pb2.TurnEvent] = deque()
        self._sizes: deque[int] = deque()
        self._seqs: deque[int] = deque()
        self._bytes = 0
        self._dropped = 0
        self._followers = 0
        self._failure: BaseException | None = None
        self._done = False
        self._arrived = asyncio.Event()
        # What the feed's followers made of its events (SSE frames), by seq, made once each.
        self._render: Callable[[events_pb2.TurnEvent], object] | None = None
        self._rendered: dict[int, object] = {}
        self._reader = asyncio.create_task(self._read(js, nc), name=f"feed {subject}")

    @property
    def followers(self) -> int:
        return self._followers

    def covers(self, after_seq: int) -> bool:
        """Whether the list still holds every event after `after_seq` (or the turn has not
        reached them yet): a follower starting there can read from it."""
        return self._dropped == 0 or (bool(self._seqs) and self._seqs[0] <= after_seq + 1)

    @property
    def failed(self) -> bool:
        return self._failure is not None

    async def _read(self, js: JetStreamContext, nc: NatsClient | None) -> None:
        kept = 0
        turn_consumers.inc()
        try:
            while True:
                try:
                    async for event in turn_events(
                        js, self.subject, after_seq=kept, idle_seconds=self._limits.idle_seconds, nc=nc
                    ):
                        kept = event.seq
                        self._keep(event)
                    return
                except FollowerBehind:  # NATS buffered past its bound for the feed itself: read on
                    log.warning("the feed of %s fell behind its consumer; reading on from %d", self.subject, kept)
        except Exception as error:  # noqa: BLE001 - whatever ended the reading, every follower is told
            self._failure = error
        finally:
            turn_consumers.dec()
            self._done = True
            self._wake()

    def _keep(self, event: events_pb2.TurnEvent) -> None:
        size = event.ByteSize()
        self._events.append(event)
        self._sizes.append(size)
        self._seqs.append(event.seq)
        self._bytes += size
        while len(self._events) > 1 and (
            len(self._events) > self._limits.max_events or self._bytes > self._limits.max_bytes
        ):
            self._events.popleft()
            self._rendered.pop(self._seqs.popleft(), None)
            self._bytes -= self._sizes.popleft()
            self._dropped += 1
        self._wake()

    def render(self, event: events_pb2.TurnEvent, render: Callable[[events_pb2.TurnEvent], object]) -> object:
        """`render(event)`, made once for all followers (one render function per feed is kept)."""
        if self._render is None:
            self._render = render
        elif render is not self._render:
            return render(event)
        if event.seq not in self._rendered:
            self._rendered[event.seq] = render(event)
        return self._rendered[event.seq]

    def _wake(self) -> None:
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    async def events(self, after_seq: int) -> AsyncIterator[events_pb2.TurnEvent]:
        """The events after `after_seq`, in order, as they arrive; FollowerBehind when the next one
        has been dropped from the list before this follower took it."""
        delivered = after_seq
        index = self._dropped + bisect.bisect_right(self._seqs, after_seq)
        while True:
            arrived = self._arrived
            if index < self._dropped:
                raise FollowerBehind(delivered)
            while index < self._dropped + len(self._events):
                event = self._events[index - self._dropped]
                index += 1
                if event.seq > delivered:  # not when joined before the list reached `after_seq`
                    delivered = event.seq
                    yield event
                if is_terminal(event):
                    return
                if index < self._dropped:
                    raise FollowerBehind(delivered)
            if self._done:
                if self._failure is not None:
                    # One failure told to many followers: each raise starts a fresh traceback.
                    raise self._failure.with_traceback(None)
                return
            await arrived.wait()

    def join(self) -> None:
        self._followers += 1
        turn_followers.inc()

    def leave(self) -> bool:
        """One follower gone; True when it was the last (its reader is stopped)."""
        self._followers -= 1
        turn_followers.dec()
        if self._followers > 0:
            return False
        self._reader.cancel()
        return True


class TurnFeeds:
    """The turns this gateway process is following, one `TurnFeed` each."""

    def __init__(self, *, max_events: int = MAX_KEPT_EVENTS, max_bytes: int = MAX_KEPT_BYTES) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._feeds: dict[str, TurnFeed] = {}

    def __len__(self) -> int:
        return len(self._feeds)

    async def follow(
        self,
        js: JetStreamContext,
        subject: str,
        *,
        after_seq: int = 0,
        idle_seconds: float,
        nc: NatsClient | None = None,
    ) -> AsyncIterator[events_pb2.TurnEvent]:
        """Every event of the turn with seq > after_seq, in order, until its end or error (as
        `turn_events`), from the turn's shared feed."""
        async for event, _ in self._follow(js, subject, None, after_seq=after_seq, idle_seconds=idle_seconds, nc=nc):
            yield event

    async def rendered(
        self,
        js: JetStreamContext,
        subject: str,
        render: Callable[[events_pb2.TurnEvent], R],
        *,
        after_seq: int = 0,
        idle_seconds: float,
        nc: NatsClient | None = None,
    ) -> AsyncIterator[tuple[events_pb2.TurnEvent, R]]:
        """`follow`, each event with `render(event)` — computed once per event for every follower
        of the feed (a thousand followers, one SSE frame built per event)."""
        following = self._follow(js, subject, render, after_seq=after_seq, idle_seconds=idle_seconds, nc=nc)
        async for event, frame in following:
            yield event, cast(R, frame)

    async def _follow(
        self,
        js: JetStreamContext,
        subject: str,
        render: Callable[[events_pb2.TurnEvent], object] | None,
        *,
        after_seq: int,
        idle_seconds: float,
        nc: NatsClient | None,
    ) -> AsyncIterator[tuple[events_pb2.TurnEvent, object]]:
        feed = self._feeds.get(subject)
        if feed is not None and feed.failed:
            feed = None  # its readers end with the failure; a new follower tries the stream again
        if feed is not None and not feed.covers(after_seq):
            # What this follower needs is older than the list keeps: it replays from the stream.
            async for event in turn_events(js, subject, after_seq=after_seq, idle_seconds=idle_seconds, nc=nc):
                yield event, render(event) if render else None
            return
        if feed is None:
            feed = TurnFeed(js, subject, FeedLimits(idle_seconds, self._max_events, self._max_bytes), nc)
            self._feeds[subject] = feed
        feed.join()
        delivered = after_seq
        try:
            async for event in feed.events(after_seq):
                delivered = event.seq
                yield event, feed.render(event, render) if render else None
        except FollowerBehind:
            if delivered > after_seq:
                followers_behind.inc()
                raise
            # Dropped before this follower took its first event (a turn longer than the list,
            # joined as it was read): not a slow reader, so it replays from the stream.
        else:
            return
        finally:
            if feed.leave() and self._feeds.get(subject) is feed:
                del self._feeds[subject]
        async for event in turn_events(js, subject, after_seq=after_seq, idle_seconds=idle_seconds, nc=nc):
            yield event, render(event) if render else None
