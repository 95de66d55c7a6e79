"""ChatService over gRPC: translation between protos and the domain, nothing more."""

import uuid
from typing import Any

import grpc

from parley.chat import store
from parley.chat.turns import TurnRequest, TurnRunner
from parley.kit.db import Sessions
from parley.kit.errors import NotFound
from parley.kit.identity import caller
from parley.kit.paging import Cursor, decode_token, encode_token, page_size
from parley.kit.timestamps import to_timestamp
from parley.v1 import chat_pb2, chat_pb2_grpc, common_pb2


class ChatApi(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self, *, sessions: Sessions, turns: TurnRunner) -> None:
        self._sessions = sessions
        self._turns = turns

    async def StartTurn(
        self, request: chat_pb2.StartTurnRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.StartTurnResponse:
        started = await self._turns.start(
            caller(context),
            TurnRequest(
                conversation_id=request.conversation_id,
                collection_ids=tuple(request.collection_ids),
                message=request.message,
                tier=request.tier,
                max_tokens=request.max_tokens,
                provider=request.provider,
                model=request.model,
                reservation_id=request.reservation_id,
            ),
        )
        return chat_pb2.StartTurnResponse(
            conversation_id=started.conversation_id, turn_id=started.turn_id, subject=started.subject
        )

    async def CancelTurn(
        self, request: chat_pb2.CancelTurnRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.CancelTurnResponse:
        owner = _owner(context)
        async with self._sessions() as session:
            if (
                await store.get_conversation(session=session, owner=owner, conversation_id=request.conversation_id)
                is None
            ):
                raise NotFound(f"conversation {request.conversation_id} not found")
        if not await self._turns.cancel(owner, request.conversation_id, request.turn_id):
            raise NotFound(f"turn {request.turn_id} is not running")
        return chat_pb2.CancelTurnResponse()

    async def ListConversations(
        self, request: chat_pb2.ListConversationsRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ListConversationsResponse:
        limit = page_size(request.page.page_size)
        async with self._sessions() as session:
            rows = await store.list_conversations(
                session=session, owner=_owner(context), limit=limit + 1, after=decode_token(request.page.page_token)
            )
        page, more = rows[:limit], len(rows) > limit
        return chat_pb2.ListConversationsResponse(
            conversations=[_conversation(row, []) for row in page],
            next_page_token=encode_token(Cursor(at=page[-1].updated_at, id=uuid.UUID(page[-1].id))) if more else "",
        )

    async def GetConversation(
        self, request: chat_pb2.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.Conversation:
        owner = _owner(context)
        async with self._sessions() as session:
            row = await store.get_conversation(session=session, owner=owner, conversation_id=request.conversation_id)
            if row is None:
                raise NotFound(f"conversation {request.conversation_id} not found")
            messages = await store.conversation_messages(
                session=session, tenant_id=owner.tenant_id, conversation_id=row.id
            )
        return _conversation(row, messages)

    async def DeleteConversation(
        self, request: chat_pb2.DeleteConversationRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.DeleteConversationResponse:
        async with self._sessions.begin() as session:
            deleted = await store.delete_conversation(
                session=session, owner=_owner(context), conversation_id=request.conversation_id
            )
        if not deleted:
            raise NotFound(f"conversation {request.conversation_id} not found")
        return chat_pb2.DeleteConversationResponse()


def _owner(context: grpc.aio.ServicerContext) -> store.Owner:
    identity = caller(context)
    return store.Owner(identity.tenant_id, identity.user_id)


def _conversation(row: Any, messages: list[Any]) -> chat_pb2.Conversation:
    return chat_pb2.Conversation(
        id=row.id,
        title=row.title,
        collection_ids=row.collection_ids,
        messages=[_message(message) for message in messages],
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
    )


def _message(row: Any) -> chat_pb2.Message:
    return chat_pb2.Message(
        id=row.id,
        role=row.role,
        content=row.content,
        sources=[chat_pb2.Source(**source) for source in row.sources],
        usage=common_pb2.TokenUsage(
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cache_read_tokens=row.cache_read_tokens,
            cache_write_tokens=row.cache_write_tokens,
        ),
        model=row.model,
        turn_id=row.turn_id,
        created_at=to_timestamp(row.created_at),
    )
