"""A turn's events on JetStream: published in order by the turn, and whether they are still kept."""

import math
import time
from collections.abc import Sequence
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from parley.kit import bus
from parley.kit.bus import STREAMS
from parley.kit.contracts import TURN_STREAMS, turn_event_msg_id, turn_subject
from parley.kit.errors import Unavailable
from parley.kit.timestamps import to_timestamp
from parley.v1 import chat_pb2, common_pb2, events_pb2

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
        await self._publish(events_pb2.TurnEvent(delta=events_pb2.TurnDelta(text=frame)))

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
        await self.flush()
        await self._publish(events_pb2.TurnEvent(error=events_pb2.TurnError(code=code, message=message)))

    async def _publish(self, event: events_pb2.TurnEvent) -> None:
        self._seq += 1
        event.conversation_id = self._conversation_id
        event.turn_id = self._turn_id
        event.seq = self._seq
        await self._js.publish(
            self._subject,
            event.SerializeToString(),
            headers={"Nats-Msg-Id": turn_event_msg_id(self._turn_id, self._seq)},
            timeout=self._publish_timeout,
        )
