"""Chat: ask a question (streamed as SSE or answered whole) and the conversations it builds."""

import uuid
from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from parley.gateway import access, chat_turns, store
from parley.gateway.api.deps import Chat, Chatter, Deps, Reader, Services
from parley.gateway.errors import ApiError, responses
from parley.gateway.schemas import Page, PageSize, PageToken
from parley.gateway.schemas.chat import ChatIn, ChatOut, Conversation
from parley.gateway.store import Principal
from parley.kit.contracts import MAX_ID_CHARS
from parley.kit.paging import DEFAULT_PAGE_SIZE
from parley.v1 import common_pb2

router = APIRouter(tags=["chat"])


# What a turn's stream carries: one SSE frame per event, `id` the event's seq (for Last-Event-ID).
TURN_STREAM = {
    "description": "With `stream: true`: server-sent events, each `data` a JSON object",
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "string",
                "description": (
                    "`event: delta` data `{text}`; `event: sources` data `{sources: [Source]}`; "
                    "`event: usage` data `{input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
                    "cache_write_1h_tokens, model, cost_usd, context_used}`; `event: end` data `{conversation_id, "
                    "turn_id, user_message_id, assistant_message_id, finish_reason, created_at}` (last); "
                    "`event: error` data `{code, message}` (last, for a turn that failed)."
                ),
            },
            "example": 'id: 1\nevent: delta\ndata: {"text": "Descale every 200 shots [1]."}\n\n',
        }
    },
}


@router.post("/v1/chat", response_model=ChatOut, responses={200: TURN_STREAM, **responses(402, 502)})
async def chat(body: ChatIn, who: Chatter, services: Deps) -> EventSourceResponse | JSONResponse:
    """Ask a question about a conversation's collections.

    With `"stream": true` the answer arrives as server-sent events: `delta` frames of text,
    then `sources`, `usage` and `end` (or `error`); each has an id to resume from.
    """
    turn = await chat_turns.start_turn(services, who, body)
    headers = {"X-Conversation-Id": turn.conversation_id, "X-Turn-Id": turn.turn_id}
    if body.stream:
        return EventSourceResponse(chat_turns.sse_frames(services, turn.subject, charge=who), headers=headers, ping=15)
    return JSONResponse(await chat_turns.collect(services, turn, who), headers=headers)


@router.get(
    "/v1/conversations/{conversation_id}/turns/{turn_id}/events",
    response_class=EventSourceResponse,
    responses={200: TURN_STREAM, **responses(410)},
)
async def turn_events(
    conversation_id: str,
    turn_id: str,
    who: Chatter,
    services: Deps,
    last_event_id: Annotated[str, Header(max_length=20)] = "",
) -> EventSourceResponse:
    """Resume (or join) a turn's stream: every event after `Last-Event-ID`.

    404 for a turn that never existed; 410 `turn_events_expired` once the stream has dropped
    the turn's events (after an hour): the conversation still holds its messages."""
    try:
        after_seq = int(last_event_id or 0)
    except ValueError:
        raise ApiError(400, "invalid_argument", "Last-Event-ID must be an event id from this stream") from None
    subject = await chat_turns.kept_turn_subject(services, who, conversation_id, turn_id)
    return EventSourceResponse(chat_turns.sse_frames(services, subject, after_seq=after_seq), ping=15)


@router.post("/v1/conversations/{conversation_id}/turns/{turn_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_turn(conversation_id: str, turn_id: str, who: Chatter, chat: Chat) -> dict[str, str]:
    await chat.cancel_turn(who, conversation_id, turn_id)
    return {"status": "cancelling"}


@router.get("/v1/conversations")
async def list_conversations(
    who: Reader,
    services: Deps,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
    page_token: PageToken = "",
    user_id: Annotated[
        str | None, Query(max_length=MAX_ID_CHARS, description="an admin: list this user's conversations")
    ] = None,
) -> Page[Conversation]:
    """The caller's conversations, most recently active first. A member sees only their own; an
    admin may name another user of the tenant with `user_id`."""
    owner = who if user_id is None else await _other_user(services, who, user_id)
    page = await services.chat.list_conversations(
        owner, common_pb2.PageRequest(page_size=page_size, page_token=page_token)
    )
    return Page(
        data=[Conversation.of(c, messages=None) for c in page.conversations],
        next_page_token=page.next_page_token or None,
    )


async def _other_user(services: Services, who: Principal, user_id: str) -> Principal:
    """An admin reads as the user the conversations belong to: chat-svc keeps them per user."""
    if not who.may(access.MANAGE_PEOPLE):
        raise ApiError(403, "forbidden", "only an admin may list another user's conversations")
    try:
        user_id = str(uuid.UUID(user_id))
    except ValueError:
        raise ApiError(404, "not_found", f"user {user_id} not found") from None
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        user = await store.get_user(session=session, tenant_id=who.tenant_id, user_id=user_id)
    if user is None:
        raise ApiError(404, "not_found", f"user {user_id} not found")
    return replace(who, user_id=user.id)


@router.get("/v1/conversations/{conversation_id}")
async def get_conversation(
    conversation_id: str,
    who: Reader,
    chat: Chat,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
    page_token: PageToken = "",
) -> Conversation:
    """The conversation with its most recent `page_size` messages, oldest to newest (newest last);
    `next_page_token` reads the messages before them (null when these are the first)."""
    page = common_pb2.PageRequest(page_size=page_size, page_token=page_token)
    return Conversation.of(await chat.get_conversation(who, conversation_id, page))


@router.delete("/v1/conversations/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_conversation(conversation_id: str, who: Chatter, chat: Chat) -> None:
    await chat.delete_conversation(who, conversation_id)


@router.get("/v1/conversations/{conversation_id}/export", response_class=Response)
async def export_conversation(
    conversation_id: str,
    who: Reader,
    chat: Chat,
    format: Literal["json", "markdown"] = "markdown",
) -> Response:
    """The conversation as a file: `markdown` to read, `json` (the conversation with every message,
    its sources, usage and context) to keep or process."""
    exported = await chat.export_conversation(who, conversation_id, format)
    extension = "json" if format == "json" else "md"
    return Response(
        exported.content,
        media_type=exported.content_type,
        headers={"Content-Disposition": f'attachment; filename="conversation-{conversation_id}.{extension}"'},
    )
