"""A chat turn as the gateway sees it: start it at chat-svc, then relay its events.

chat-svc checks the request, builds the prompt and holds the budget before StartTurn answers,
so every refusal (404, 402, 400) is an HTTP status here; once the turn runs, its events are read
from JetStream on `turn_subject(conversation, turn)`.
"""

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from nats.errors import Error as NatsError

from parley.gateway.api.deps import Services
from parley.gateway.errors import ApiError
from parley.gateway.events import FollowerBehind, TurnIdle, TurnStreamLost, error_frame, turn_events
from parley.gateway.schemas import optional_usd, proto_fields
from parley.gateway.schemas.chat import ChatIn, ContextUsed, Message, Source, Usage
from parley.gateway.store import Principal
from parley.kit.contracts import tier_named, turn_subject
from parley.v1 import chat_pb2, events_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StartedTurn:
    conversation_id: str
    turn_id: str

    @property
    def subject(self) -> str:
        return turn_subject(self.conversation_id, self.turn_id)


async def start_turn(services: Services, who: Principal, body: ChatIn) -> StartedTurn:
    """Budgets first (budgets.py: the key's, the user's; 402 before chat-svc is called)."""
    await services.budgets.before_spending(services, who)
    request = chat_pb2.StartTurnRequest(
        conversation_id=body.conversation_id or "",
        collection_ids=body.collection_ids,
        message=body.message,
        tier=chat_pb2.Tier.Name(tier_named(body.tier)),
        max_tokens=body.max_tokens or 0,  # 0: chat-svc's default
        intent_hint=body.intent,
        current_section_id=body.current_section_id or "",
        provider=body.provider,
        model=body.model,
    )
    started = await services.chat.start_turn(who, request)
    return StartedTurn(started.conversation_id, started.turn_id)


async def kept_turn_subject(services: Services, who: Principal, conversation_id: str, turn_id: str) -> str:
    """Where a turn's events can still be read. chat-svc knows its turns: one that never existed
    (or is another tenant's) is a 404, one whose events the stream has dropped a 410."""
    turn = await services.chat.get_turn(who, conversation_id, turn_id)
    if not turn.events_kept:
        raise ApiError(
            410,
            "turn_events_expired",
            f"the events of turn {turn.id} are no longer kept; "
            f"its stored messages are at GET /v1/conversations/{turn.conversation_id}",
        )
    # The ids chat-svc stored: never a wildcard or a space in the subject.
    return turn_subject(turn.conversation_id, turn.id)


def sse_frame(event: events_pb2.TurnEvent) -> dict[str, str]:
    """One turn event as an SSE frame: its seq is the event id a client resumes from."""
    kind = event.WhichOneof("kind")
    data: dict[str, Any]
    if kind == "sources":
        data = {"sources": [Source.of(source).model_dump() for source in event.sources.sources]}
    elif kind == "usage":
        data = {
            **Usage.of(event.usage.usage).model_dump(),
            "model": event.usage.model,
            "cost_usd": optional_usd(event.usage, "cost_micros"),
            "context_used": _context_used(event.usage).model_dump() if event.usage.HasField("context_used") else None,
        }
    elif kind == "end":
        data = {"conversation_id": event.conversation_id, "turn_id": event.turn_id, **proto_fields(event.end)}
    else:  # delta, error, tool_call, tool_result: their fields are the frame
        data = proto_fields(getattr(event, str(kind)))
    return {"id": str(event.seq), "event": str(kind), "data": json.dumps(data)}


def _context_used(usage: events_pb2.TurnUsage) -> ContextUsed:
    return ContextUsed.of(usage.context_used)


def _tokens(usage: events_pb2.TurnUsage) -> int:
    counted = usage.usage
    return counted.input_tokens + counted.output_tokens + counted.cache_read_tokens + counted.cache_write_tokens


async def sse_frames(
    services: Services, subject: str, *, after_seq: int = 0, charge: Principal | None = None
) -> AsyncIterator[dict[str, str]]:
    """The turn's events as SSE frames; `charge`: whose LLM-tokens rate limit the turn's tokens
    count against (the caller who started it; a client resuming it is not charged again)."""
    try:
        async for event in turn_events(
            services.js,
            subject,
            after_seq=after_seq,
            idle_seconds=services.settings.turn_idle_seconds,
            nc=services.nc,
        ):
            if charge is not None and event.WhichOneof("kind") == "usage":
                await services.limiter.charge_tokens(services.sessions, charge, _tokens(event.usage))
            yield sse_frame(event)
    except TurnIdle:
        yield error_frame("timeout", "the answer stopped arriving")
    except FollowerBehind as behind:
        yield error_frame(
            "behind",
            f"this stream fell too far behind the answer; resume with Last-Event-ID: {behind.last_seq}",
        )
    except NatsError:
        log.exception("reading a turn's events failed")
        yield error_frame("unavailable", "the answer's stream was interrupted; resume with Last-Event-ID")


async def collect(services: Services, turn: StartedTurn, who: Principal) -> dict[str, Any]:
    """The whole answer, for clients that asked for no stream."""
    text: list[str] = []
    sources: list[Source] = []
    usage: Usage | None = None
    context_used: ContextUsed | None = None
    model = ""
    cost_usd: float | None = None
    try:
        async for event in turn_events(
            services.js, turn.subject, idle_seconds=services.settings.turn_idle_seconds, nc=services.nc
        ):
            kind = event.WhichOneof("kind")
            if kind == "delta":
                text.append(event.delta.text)
            elif kind == "sources":
                sources = [Source.of(source) for source in event.sources.sources]
            elif kind == "usage":
                await services.limiter.charge_tokens(services.sessions, who, _tokens(event.usage))
                usage, model = Usage.of(event.usage.usage), event.usage.model
                cost_usd = optional_usd(event.usage, "cost_micros")
                context_used = _context_used(event.usage) if event.usage.HasField("context_used") else None
            elif kind == "error":
                raise ApiError(502, event.error.code or "turn_failed", event.error.message)
            elif kind == "end":
                end = event.end
                message = Message(
                    id=end.assistant_message_id,
                    role="assistant",
                    content="".join(text),
                    sources=sources,
                    usage=usage,
                    model=model or None,
                    context_used=context_used,
                    cost_usd=cost_usd,
                    turn_id=turn.turn_id,
                    created_at=end.created_at.ToDatetime(tzinfo=UTC) if end.HasField("created_at") else None,
                )
                return {
                    "conversation_id": turn.conversation_id,
                    "turn_id": turn.turn_id,
                    "message": message.model_dump(mode="json"),
                    "finish_reason": end.finish_reason,
                }
    except TurnIdle:
        raise ApiError(504, "timeout", "the answer stopped arriving") from None
    except TurnStreamLost:
        raise ApiError(
            503,
            "unavailable",
            f"the event bus restarted while the answer streamed; the conversation {turn.conversation_id} keeps "
            "what was stored",
        ) from None
    raise ApiError(502, "turn_failed", "the turn ended without an answer")
