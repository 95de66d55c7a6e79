"""ChatService over gRPC: translation between protos and the domain, nothing more."""

import json

from parley.chat import store
from parley.chat.completions import Completions
from parley.chat.conversations import Conversations
from parley.chat.export import export
from parley.chat.tools import TOOLS, ToolDesk
from parley.chat.turn_context import TurnRequest
from parley.chat.turns import TurnRunner
from parley.kit.errors import Unavailable
from parley.kit.identity import caller
from parley.kit.rpc import Context
from parley.kit.timestamps import to_timestamp
from parley.v1 import chat_pb2, chat_pb2_grpc


class ChatApi(chat_pb2_grpc.ChatServiceServicer):
    def __init__(
        self,
        *,
        turns: TurnRunner,
        conversations: Conversations,
        completions: Completions,
        tools: ToolDesk | None = None,
    ) -> None:
        self._turns = turns
        self._conversations = conversations
        self._completions = completions
        self._tools = tools

    async def StartTurn(self, request: chat_pb2.StartTurnRequest, context: Context) -> chat_pb2.StartTurnResponse:
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
                intent=request.intent_hint,
                current_section_id=request.current_section_id,
            ),
        )
        return chat_pb2.StartTurnResponse(conversation_id=started.conversation_id, turn_id=started.turn_id)

    async def GetTurn(self, request: chat_pb2.GetTurnRequest, context: Context) -> chat_pb2.Turn:
        view = await self._conversations.turn(
            _owner(context), conversation_id=request.conversation_id, turn_id=request.turn_id
        )
        return chat_pb2.Turn(
            id=view.turn.id,
            conversation_id=view.turn.conversation_id,
            state=f"TURN_STATE_{view.turn.state.upper()}",
            events_kept=view.events_kept,
            created_at=to_timestamp(view.turn.created_at),
        )

    async def CancelTurn(self, request: chat_pb2.CancelTurnRequest, context: Context) -> chat_pb2.CancelTurnResponse:
        await self._turns.cancel(_owner(context), conversation_id=request.conversation_id, turn_id=request.turn_id)
        return chat_pb2.CancelTurnResponse()

    async def ListConversations(
        self, request: chat_pb2.ListConversationsRequest, context: Context
    ) -> chat_pb2.ListConversationsResponse:
        page = await self._conversations.page(
            _owner(context), size=request.page.page_size, token=request.page.page_token
        )
        return chat_pb2.ListConversationsResponse(
            conversations=[_conversation(record, []) for record in page.conversations],
            next_page_token=page.next_page_token,
        )

    async def GetConversation(
        self, request: chat_pb2.GetConversationRequest, context: Context
    ) -> chat_pb2.Conversation:
        page = await self._conversations.read(
            _owner(context), request.conversation_id, size=request.page.page_size, token=request.page.page_token
        )
        found = _conversation(page.conversation, page.messages)
        found.next_page_token = page.next_page_token
        return found

    async def DeleteConversation(
        self, request: chat_pb2.DeleteConversationRequest, context: Context
    ) -> chat_pb2.DeleteConversationResponse:
        await self._conversations.delete(_owner(context), request.conversation_id)
        return chat_pb2.DeleteConversationResponse()

    async def ExportConversation(
        self, request: chat_pb2.ExportConversationRequest, context: Context
    ) -> chat_pb2.ExportConversationResponse:
        conversation, messages = await self._conversations.get(_owner(context), request.conversation_id)
        exported = export(_conversation(conversation, messages), request.format)
        return chat_pb2.ExportConversationResponse(content_type=exported.content_type, content=exported.content)

    async def Complete(self, request: chat_pb2.CompleteRequest, context: Context) -> chat_pb2.CompleteResponse:
        # A failed completion was retried inside (ReliableProvider) and billed; its UNAVAILABLE is
        # not retried by the caller's channel (kit.rpc), the caller decides.
        return await self._completions.complete(caller(context), request, within=context.time_remaining())

    async def ListTools(self, request: chat_pb2.ListToolsRequest, context: Context) -> chat_pb2.ListToolsResponse:
        return chat_pb2.ListToolsResponse(
            tools=[
                chat_pb2.ToolSpec(
                    name=spec.name, description=spec.description, parameters_json=json.dumps(spec.parameters)
                )
                for spec in TOOLS
            ]
        )

    async def RunTool(self, request: chat_pb2.RunToolRequest, context: Context) -> chat_pb2.RunToolResponse:
        if self._tools is None:
            raise Unavailable("tools are not served here")
        result = await self._tools.run(
            caller(context),
            collection_ids=list(dict.fromkeys(request.collection_ids)),
            name=request.name,
            arguments=request.arguments_json,
        )
        return chat_pb2.RunToolResponse(result=result.text, is_error=result.is_error)


def _owner(context: Context) -> store.Owner:
    identity = caller(context)
    return store.Owner(identity.tenant_id, identity.user_id)


def _conversation(record: store.ConversationRecord, messages: list[store.MessageRecord]) -> chat_pb2.Conversation:
    return chat_pb2.Conversation(
        id=record.id,
        title=record.title,
        collection_ids=record.collection_ids,
        messages=[message_proto(message) for message in messages],
        created_at=to_timestamp(record.created_at),
        updated_at=to_timestamp(record.updated_at),
    )


def message_proto(record: store.MessageRecord) -> chat_pb2.Message:
    return chat_pb2.Message(
        id=record.id,
        role=record.role,
        content=record.content,
        sources=record.sources,
        # A question costs nothing by itself: only an answer carries the call's usage.
        usage=record.usage if record.role == "assistant" else None,
        model=record.model,
        turn_id=record.turn_id,
        created_at=to_timestamp(record.created_at),
        incomplete=record.incomplete,
        context_used=record.context_used,
        cost_micros=record.cost_micros,  # None leaves it unset: not known
    )
