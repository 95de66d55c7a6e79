"""A turn's events on JetStream: published in order by the turn, and whether they are still kept."""

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from parley.kit import bus
from parley.kit.bus import STREAMS
from parley.kit.contracts import TURN_STREAMS, turn_event_msg_id, turn_subject
from parley.kit.errors import Unavailable
from parley.kit.timestamps import to_timestamp
from parley.v1 import chat_pb2, common_pb2, events_pb2

log = logging.getLogger(__name__)

# Delta frames sent before the oldest of them must be acknowledged (a turn's frames are small).
MAX_UNACKED_FRAMES = 64

# The stream that keeps turn events (an hour, in memory): where a late reader looks for them.
TURN_STREAM_NAME = next(str(config.name) for config in STREAMS if TURN_STREAMS in (config.subjects or ()))


async def require_turn_stream(js: JetStreamContext) -> None:
    """Unavailable unless turn events can be published now: a turn checks this before it holds a
    budget or calls a model, so a turn whose client could never see the answer costs nothing.
    A stream NATS lost (a restart; its streams live in memory) is declared again here."""
    try:
        await js.stream_info(TURN_STREAM_NAME)
        return
    except NotFoundError:
        pass
    except Exception as error:
        raise Unavailable("the event bus is unavailable; try again") from error
    try:
        await bus.ensure_streams(js)
    except Exception as error:
        raise Unavailable("the event bus is unavailable; try again") from error


async def events_kept(js: JetStreamContext, *, conversation_id: str, turn_id: str) -> bool:
    """Whether the stream still holds any event of the turn (it drops them after its max age)."""
    try:
        await js.get_last_msg(TURN_STREAM_NAME, turn_subject(conversation_id, turn_id))
    except NotFoundError:
        return False
    return True


class TurnStream:
    """Publishes one turn's events in order, numbering them 1, 2, 3 … (the SSE event ids).

    Provider tokens are coalesced into frames of `frame_chars` or `frame_seconds`, whichever
    comes first; the first token is a frame of its own, at once. Each event's Nats-Msg-Id is
    `turn_event_msg_id(turn, seq)`, so a retried publish is never a duplicate.

    Delta frames are pipelined: each is sent without waiting for JetStream's acknowledgement of
    the one before (one connection keeps them in order), at most `MAX_UNACKED_FRAMES` at a time.
    Every other event (sources, usage, end, error, a tool) first waits for every frame before it
    to be acknowledged, and is itself acknowledged before the turn goes on: a frame NATS did not
    take fails the call that finds it (the next frame's, or that event's) as its own publish
    would have, and a turn's `end` is never announced over a lost frame. A failed frame does not
    hold back an `error` event: the error is what the client needs to hear.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        conversation_id: str,
        turn_id: str,
        frame_chars: int,
        frame_seconds: float,
        publish_timeout: float,
    ) -> None:
        self._js = js
        self._conversation_id = conversation_id
        self._turn_id = turn_id
        self._subject = turn_subject(conversation_id, turn_id)
        self._frame_chars = frame_chars
        self._frame_seconds = frame_seconds
        self._publish_timeout = publish_timeout
        self._seq = 0
        self._pending: list[str] = []
        self._pending_chars = 0
        # Never flushed: the first token goes out the moment it arrives (it is what a person
        # waits for); coalescing starts from it. Counting from the turn's start instead held a
        # fast provider's first tokens back until `frame_seconds` had passed.
        self._last_flush = -math.inf
        self._unacked: deque[asyncio.Future[PubAck]] = deque()

    @property
    def subject(self) -> str:
        return self._subject

    async def delta(self, text: str) -> None:
        self._pending.append(text)
        self._pending_chars += len(text)
        if self._pending_chars >= self._frame_chars or time.monotonic() - self._last_flush >= self._frame_seconds:
            await self.flush()

    async def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        frame = "".join(self._pending)
        self._pending.clear()
        self._pending_chars = 0
        self._check_acknowledged()
        if len(self._unacked) >= MAX_UNACKED_FRAMES:
            await asyncio.wait_for(self._unacked.popleft(), self._publish_timeout)
        event = self._numbered(events_pb2.TurnEvent(delta=events_pb2.TurnDelta(text=frame)))
        acknowledged = await self._js.publish_async(
            self._subject,
            event.SerializeToString(),
            headers={"Nats-Msg-Id": turn_event_msg_id(self._turn_id, event.seq)},
            wait_stall=self._publish_timeout,
        )
        self._unacked.append(acknowledged)

    def _check_acknowledged(self) -> None:
        """Let go of the frames acknowledged so far; raise for one NATS refused."""
        while self._unacked and self._unacked[0].done():
            self._unacked.popleft().result()

    async def _confirm(self) -> None:
        """Every frame sent so far acknowledged, within the publish timeout; raises for one that
        was not (those still waiting are let go)."""
        unacked, self._unacked = list(self._unacked), deque()
        if unacked:
            await asyncio.wait_for(asyncio.gather(*unacked), self._publish_timeout)

    async def sources(self, sources: Sequence[chat_pb2.Source]) -> None:
        await self.flush()
        await self._publish(events_pb2.TurnEvent(sources=events_pb2.TurnSources(sources=sources)))

    async def usage(
        self,
        usage: common_pb2.TokenUsage,
        *,
        model: str,
        cost_micros: int | None = None,
        context_used: chat_pb2.ContextUsed | None = None,
    ) -> None:
        await self.flush()
        event = events_pb2.TurnUsage(usage=usage, model=model, cost_micros=cost_micros, context_used=context_used)
        await self._publish(events_pb2.TurnEvent(usage=event))

    async def end(
        self, *, user_message_id: str, assistant_message_id: str, finish_reason: str, created_at: datetime
    ) -> None:
        await self.flush()
        end = events_pb2.TurnEnd(
            user_message_id=user_message_id,
            assistant_message_id=assistant_message_id,
            finish_reason=finish_reason,
            created_at=to_timestamp(created_at),
        )
        await self._publish(events_pb2.TurnEvent(end=end))

    async def tool(self, call: chat_pb2.ToolCall, *, done: bool) -> None:
        """A tool the model called (`tool_call`), or, once it ran, what it returned (`tool_result`)."""
        await self.flush()
        event = events_pb2.TurnEvent(tool_result=call) if done else events_pb2.TurnEvent(tool_call=call)
        await self._publish(event)

    async def error(self, *, code: str, message: str) -> None:
        try:
            await self.flush()
            await self._confirm()
        except Exception:  # a lost frame or an unreachable NATS: the error is still worth a try
            log.warning("a frame before a turn's error was not acknowledged", exc_info=True)
        await self._publish(events_pb2.TurnEvent(error=events_pb2.TurnError(code=code, message=message)))

    def _numbered(self, event: events_pb2.TurnEvent) -> events_pb2.TurnEvent:
        self._seq += 1
        event.conversation_id = self._conversation_id
        event.turn_id = self._turn_id
        event.seq = self._seq
        return event

    async def _publish(self, event: events_pb2.TurnEvent) -> None:
        """An event other than a delta frame: after every frame before it is acknowledged."""
        await self._confirm()
        event = self._numbered(event)
        await self._js.publish(
            self._subject,
            event.SerializeToString(),
            headers={"Nats-Msg-Id": turn_event_msg_id(self._turn_id, self._seq)},
            timeout=self._publish_timeout,
        )
