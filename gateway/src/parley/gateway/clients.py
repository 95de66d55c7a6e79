"""Every gRPC call the gateway makes, each with a deadline and the caller's identity."""

import uuid
from collections.abc import AsyncIterator

import grpc

from parley.gateway.store import Principal
from parley.kit.identity import Identity, current_request_id
from parley.kit.rpc import open_channel
from parley.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    common_pb2,
    ingestion_pb2,
    ingestion_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
)

UPLOAD_PIECE_BYTES = 64 * 1024


def _metadata(principal: Principal) -> tuple[tuple[str, str], ...]:
    identity = Identity(tenant_id=principal.tenant_id, user_id=principal.user_id, request_id=current_request_id())
    return identity.metadata()


class Backends:
    def __init__(self, *, ingestion_target: str, chat_target: str, usage_target: str, deadline_seconds: float) -> None:
        self._channels: list[grpc.aio.Channel] = [
            open_channel(ingestion_target),
            open_channel(chat_target),
            open_channel(usage_target),
        ]
        self.ingestion = ingestion_pb2_grpc.IngestionServiceStub(self._channels[0])
        self.chat = chat_pb2_grpc.ChatServiceStub(self._channels[1])
        self.usage = usage_pb2_grpc.UsageServiceStub(self._channels[2])
        self.deadline = deadline_seconds

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    # Ingestion

    async def create_collection(self, who: Principal, *, name: str, description: str) -> ingestion_pb2.Collection:
        request = ingestion_pb2.CreateCollectionRequest(name=name, description=description)
        return await self.ingestion.CreateCollection(request, timeout=self.deadline, metadata=_metadata(who))

    async def get_collection(self, who: Principal, collection_id: str) -> ingestion_pb2.Collection:
        request = ingestion_pb2.GetCollectionRequest(collection_id=collection_id)
        return await self.ingestion.GetCollection(request, timeout=self.deadline, metadata=_metadata(who))

    async def list_collections(
        self, who: Principal, page: common_pb2.PageRequest
    ) -> ingestion_pb2.ListCollectionsResponse:
        request = ingestion_pb2.ListCollectionsRequest(page=page)
        return await self.ingestion.ListCollections(request, timeout=self.deadline, metadata=_metadata(who))

    async def delete_collection(self, who: Principal, collection_id: str) -> None:
        request = ingestion_pb2.DeleteCollectionRequest(collection_id=collection_id)
        await self.ingestion.DeleteCollection(request, timeout=self.deadline, metadata=_metadata(who))

    async def ingest_document(
        self, who: Principal, header: ingestion_pb2.DocumentHeader, content: bytes
    ) -> ingestion_pb2.Document:
        async def pieces() -> AsyncIterator[ingestion_pb2.IngestDocumentRequest]:
            yield ingestion_pb2.IngestDocumentRequest(header=header)
            for start in range(0, len(content), UPLOAD_PIECE_BYTES):
                yield ingestion_pb2.IngestDocumentRequest(content=content[start : start + UPLOAD_PIECE_BYTES])

        # An upload carries more bytes than a lookup: a longer deadline, still a deadline.
        return await self.ingestion.IngestDocument(pieces(), timeout=self.deadline * 6, metadata=_metadata(who))

    async def get_document(self, who: Principal, document_id: str) -> ingestion_pb2.Document:
        request = ingestion_pb2.GetDocumentRequest(document_id=document_id)
        return await self.ingestion.GetDocument(request, timeout=self.deadline, metadata=_metadata(who))

    async def list_documents(
        self, who: Principal, collection_id: str, page: common_pb2.PageRequest
    ) -> ingestion_pb2.ListDocumentsResponse:
        request = ingestion_pb2.ListDocumentsRequest(collection_id=collection_id, page=page)
        return await self.ingestion.ListDocuments(request, timeout=self.deadline, metadata=_metadata(who))

    async def delete_document(self, who: Principal, document_id: str) -> None:
        request = ingestion_pb2.DeleteDocumentRequest(document_id=document_id)
        await self.ingestion.DeleteDocument(request, timeout=self.deadline, metadata=_metadata(who))

    def watch_document(
        self, who: Principal, document_id: str, *, timeout: float
    ) -> AsyncIterator[ingestion_pb2.DocumentProgress]:
        request = ingestion_pb2.WatchDocumentRequest(document_id=document_id)
        return self.ingestion.WatchDocument(request, timeout=timeout, metadata=_metadata(who))

    # Chat

    async def start_turn(self, who: Principal, request: chat_pb2.StartTurnRequest) -> chat_pb2.StartTurnResponse:
        return await self.chat.StartTurn(request, timeout=self.deadline, metadata=_metadata(who))

    async def get_conversation(self, who: Principal, conversation_id: str) -> chat_pb2.Conversation:
        request = chat_pb2.GetConversationRequest(conversation_id=conversation_id)
        return await self.chat.GetConversation(request, timeout=self.deadline, metadata=_metadata(who))

    async def list_conversations(
        self, who: Principal, page: common_pb2.PageRequest
    ) -> chat_pb2.ListConversationsResponse:
        request = chat_pb2.ListConversationsRequest(page=page)
        return await self.chat.ListConversations(request, timeout=self.deadline, metadata=_metadata(who))

    async def delete_conversation(self, who: Principal, conversation_id: str) -> None:
        request = chat_pb2.DeleteConversationRequest(conversation_id=conversation_id)
        await self.chat.DeleteConversation(request, timeout=self.deadline, metadata=_metadata(who))

    async def cancel_turn(self, who: Principal, conversation_id: str, turn_id: str) -> None:
        request = chat_pb2.CancelTurnRequest(conversation_id=conversation_id, turn_id=turn_id)
        await self.chat.CancelTurn(request, timeout=self.deadline, metadata=_metadata(who))

    # Usage

    async def reserve(
        self, who: Principal, *, model: str, input_tokens: int, max_output_tokens: int
    ) -> usage_pb2.ReserveResponse:
        # A key of this call's own, so gRPC's retries of it hold once. Not the request id: a client
        # chooses that, and reusing one must not hand back an earlier hold instead of a new check.
        request = usage_pb2.ReserveRequest(
            model=model,
            input_tokens=input_tokens,
            max_output_tokens=max_output_tokens,
            idempotency_key=uuid.uuid4().hex,
        )
        return await self.usage.Reserve(request, timeout=self.deadline, metadata=_metadata(who))

    async def settle(self, who: Principal, reservation_id: str) -> None:
        request = usage_pb2.SettleRequest(reservation_id=reservation_id)
        await self.usage.Settle(request, timeout=self.deadline, metadata=_metadata(who))

    async def get_usage(self, who: Principal, request: usage_pb2.GetUsageRequest) -> usage_pb2.GetUsageResponse:
        return await self.usage.GetUsage(request, timeout=self.deadline, metadata=_metadata(who))

    async def get_summary(self, who: Principal, window: str) -> usage_pb2.GetSummaryResponse:
        request = usage_pb2.GetSummaryRequest(window=window)
        return await self.usage.GetSummary(request, timeout=self.deadline, metadata=_metadata(who))

    async def check_quota(self, who: Principal) -> usage_pb2.CheckQuotaResponse:
        return await self.usage.CheckQuota(
            usage_pb2.CheckQuotaRequest(), timeout=self.deadline, metadata=_metadata(who)
        )

    async def set_budget(self, who: Principal, monthly_limit_micros: int | None) -> usage_pb2.Budget:
        # None leaves the field unset: no limit.
        request = usage_pb2.SetBudgetRequest(monthly_limit_micros=monthly_limit_micros)
        return await self.usage.SetBudget(request, timeout=self.deadline, metadata=_metadata(who))
