"""A chat turn as the gateway runs it: hold budget, start the turn, relay its events.

The hold is an upper bound (the tier's prompt budget plus the question, and max_tokens of
output); usage-svc releases it when chat-svc's usage event for the turn is recorded. If the
turn cannot even start, the hold is released here.
"""

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from nats.errors import Error as NatsError

from parley.gateway.api.deps import Services
from parley.gateway.errors import ApiError
from parley.gateway.events import TurnIdle, error_frame, turn_events
from parley.gateway.schemas import TIERS, ChatIn, Message, Source, Usage
from parley.gateway.store import Principal
from parley.kit.contracts import tier_budget
from parley.kit.tokens import count_tokens
from parley.v1 import chat_pb2, events_pb2

log = logging.getLogger(__name__)


TURN_NOT_STARTED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNAVAILABLE,
    }
)


@dataclass(frozen=True, slots=True)
class StartedTurn:
    conversation_id: str
    turn_id: str
    subject: str


async def start_turn(services: Services, who: Principal, body: ChatIn) -> StartedTurn:
    if not body.conversation_id and not body.collection_ids:
        raise ApiError(400, "invalid_argument", "give collection_ids to start a conversation, or a conversation_id")
    for collection_id in dict.fromkeys(body.collection_ids):
        await services.backends.get_collection(who, collection_id)  # another tenant's collection is a 404
    settings = services.settings
    max_tokens = body.max_tokens or settings.default_max_tokens
    try:
        hold = await services.backends.reserve(
            who,
            model=settings.default_model,
            input_tokens=tier_budget(TIERS[body.tier]) + count_tokens(body.message),
            max_output_tokens=max_tokens,
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise ApiError(402, "budget_exceeded", error.details() or "the monthly budget is spent") from None
        raise
    request = chat_pb2.StartTurnRequest(
        conversation_id=body.conversation_id or "",
        collection_ids=body.collection_ids,
        message=body.message,
        tier=TIERS[body.tier],
        max_tokens=max_tokens,
        provider=settings.default_provider,
        model=settings.default_model,
        intent_hint=body.intent,
        reservation_id=hold.reservation_id,
    )
    try:
        started = await services.backends.start_turn(who, request)
    except grpc.aio.AioRpcError as error:
        # Release the hold only when the turn surely did not start; after a timeout it may be
        # running, and its usage event (or the hold's expiry) settles it.
        if error.code() in TURN_NOT_STARTED:
            await services.backends.settle(who, hold.reservation_id)
        raise
    return StartedTurn(started.conversation_id, started.turn_id, started.subject)


def sse_frame(event: events_pb2.TurnEvent) -> dict[str, str]:
    """One turn event as an SSE frame: its seq is the event id a client resumes from."""
    kind = event.WhichOneof("kind")
    data: dict[str, Any]
    if kind == "delta":
        data = {"text": event.delta.text}
    elif kind == "sources":
        data = {"sources": [Source.of(source).model_dump() for source in event.sources.sources]}
    elif kind == "usage":
        data = {**Usage.of(event.usage.usage).model_dump(), "model": event.usage.model}
    elif kind == "end":
        data = {
            "conversation_id": event.conversation_id,
            "turn_id": event.turn_id,
            "user_message_id": event.end.user_message_id,
            "assistant_message_id": event.end.assistant_message_id,
            "finish_reason": event.end.finish_reason,
        }
    else:
        data = {"code": event.error.code, "message": event.error.message}
    return {"id": str(event.seq), "event": str(kind), "data": json.dumps(data)}


async def sse_frames(services: Services, subject: str, *, after_seq: int = 0) -> AsyncIterator[dict[str, str]]:
    try:
        async for event in turn_events(
            services.js, subject, after_seq=after_seq, idle_seconds=services.settings.turn_idle_seconds
        ):
            yield sse_frame(event)
    except TurnIdle:
        yield error_frame("timeout", "the answer stopped arriving")
    except NatsError:
        log.exception("reading a turn's events failed")
        yield error_frame("unavailable", "the answer's stream was interrupted; resume with Last-Event-ID")


async def collect(services: Services, turn: StartedTurn) -> dict[str, Any]:
    """The whole answer, for clients that asked for no stream."""
    text: list[str] = []
    sources: list[Source] = []
    usage: Usage | None = None
    model = ""
    try:
        async for event in turn_events(services.js, turn.subject, idle_seconds=services.settings.turn_idle_seconds):
            kind = event.WhichOneof("kind")
            if kind == "delta":
                text.append(event.delta.text)
            elif kind == "sources":
                sources = [Source.of(source) for source in event.sources.sources]
            elif kind == "usage":
                usage, model = Usage.of(event.usage.usage), event.usage.model
            elif kind == "error":
                raise ApiError(502, event.error.code or "turn_failed", event.error.message)
            elif kind == "end":
                message = Message(
                    id=event.end.assistant_message_id,
                    role="assistant",
                    content="".join(text),
                    sources=sources,
                    usage=usage,
                    model=model or None,
                    turn_id=turn.turn_id,
                    created_at=None,
                )
                return {
                    "conversation_id": turn.conversation_id,
                    "turn_id": turn.turn_id,
                    "message": message.model_dump(mode="json"),
                    "finish_reason": event.end.finish_reason,
                }
    except TurnIdle:
        raise ApiError(504, "timeout", "the answer stopped arriving") from None
    raise ApiError(502, "turn_failed", "the turn ended without an answer")
