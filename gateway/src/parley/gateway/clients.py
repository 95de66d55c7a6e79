"""Every gRPC call the gateway makes, each with a deadline and the caller's identity.

One Protocol and one client class per backend (ingestion, retrieval, chat, usage), each client
owning its channel; routes and dependencies take the one they need (api/deps.py), and a test can
put a fake of a Protocol in its place (gateway/tests/test_gateway_chat.py fakes chat-svc).
Errors are the services' own `grpc.aio.AioRpcError`s; errors.py maps them to HTTP once.
"""

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import grpc

from parley.gateway.store import Principal
from parley.kit.identity import Identity, Signer, current_request_id
from parley.kit.rpc import open_channel
from parley.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    common_pb2,
    ingestion_pb2,
    ingestion_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
)

UPLOAD_PIECE_BYTES = 64 * 1024


class IngestionBackend(Protocol):
    async def create_collection(self, who: Principal, *, name: str, description: str) -> ingestion_pb2.Collection: ...

    async def get_collection(self, who: Principal, collection_id: str) -> ingestion_pb2.Collection: ...

    async def list_collections(
        self, who: Principal, page: common_pb2.PageRequest
    ) -> ingestion_pb2.ListCollectionsResponse: ...

    async def delete_collection(self, who: Principal, collection_id: str) -> None: ...

    async def ingest_document(
        self, who: Principal, header: ingestion_pb2.DocumentHeader, content: bytes
    ) -> ingestion_pb2.Document: ...

    async def update_document(
        self, who: Principal, header: ingestion_pb2.VersionHeader, content: bytes
    ) -> ingestion_pb2.DocumentUpdate: ...

    async def get_document(self, who: Principal, document_id: str) -> ingestion_pb2.Document: ...

    async def list_documents(
        self, who: Principal, collection_id: str, page: common_pb2.PageRequest
    ) -> ingestion_pb2.ListDocumentsResponse: ...

    async def delete_document(self, who: Principal, document_id: str) -> None: ...

    async def list_sections(
        self, who: Principal, document_id: str, page: common_pb2.PageRequest
    ) -> ingestion_pb2.ListSectionsResponse: ...

    async def get_characters(self, who: Principal, document_id: str) -> ingestion_pb2.CharactersReport: ...

    async def get_pacing(self, who: Principal, document_id: str) -> ingestion_pb2.PacingReport: ...

    async def get_artifacts(
        self, who: Principal, document_id: str, *, kinds: list[str], fresh: bool
    ) -> ingestion_pb2.GetArtifactsResponse: ...

    async def list_dead_letters(self, who: Principal) -> ingestion_pb2.ListDeadLettersResponse: ...

    async def replay_dead_letter(self, who: Principal, seq: int) -> ingestion_pb2.DeadLetter: ...

    def watch_document(
        self, who: Principal, document_id: str, *, timeout: float
    ) -> AsyncIterable[ingestion_pb2.DocumentProgress]: ...


class RetrievalBackend(Protocol):
    async def search(self, who: Principal, request: retrieval_pb2.SearchRequest) -> retrieval_pb2.SearchResponse: ...

    async def get_chunks(self, who: Principal, chunk_ids: list[str]) -> retrieval_pb2.GetChunksResponse: ...

    async def embed(self, who: Principal, request: retrieval_pb2.EmbedRequest) -> retrieval_pb2.EmbedResponse: ...


class ChatBackend(Protocol):
    async def start_turn(self, who: Principal, request: chat_pb2.StartTurnRequest) -> chat_pb2.StartTurnResponse: ...

    async def get_turn(self, who: Principal, conversation_id: str, turn_id: str) -> chat_pb2.Turn: ...

    async def cancel_turn(self, who: Principal, conversation_id: str, turn_id: str) -> None: ...

    async def get_conversation(
        self, who: Principal, conversation_id: str, page: common_pb2.PageRequest | None = None
    ) -> chat_pb2.Conversation: ...

    async def list_conversations(
        self, who: Principal, page: common_pb2.PageRequest
    ) -> chat_pb2.ListConversationsResponse: ...

    async def delete_conversation(self, who: Principal, conversation_id: str) -> None: ...

    async def export_conversation(
        self, who: Principal, conversation_id: str, format: str
    ) -> chat_pb2.ExportConversationResponse: ...

    async def list_tools(self, who: Principal) -> chat_pb2.ListToolsResponse: ...

    async def run_tool(
        self, who: Principal, *, collection_ids: list[str], name: str, arguments: dict[str, object]
    ) -> chat_pb2.RunToolResponse: ...


class UsageBackend(Protocol):
    async def get_usage(self, who: Principal, request: usage_pb2.GetUsageRequest) -> usage_pb2.GetUsageResponse: ...

    async def get_summary(self, who: Principal, window: str) -> usage_pb2.GetSummaryResponse: ...

    async def check_quota(self, who: Principal) -> usage_pb2.CheckQuotaResponse: ...

    async def set_budget(self, who: Principal, monthly_limit_micros: int | None) -> usage_pb2.Budget: ...


class _Client:
    """One backend's channel, its deadline, and the caller's identity as signed metadata
    (kit.identity): what every backend verifies."""

    def __init__(self, target: str, *, deadline_seconds: float, signer: Signer) -> None:
        self._channel: grpc.aio.Channel = open_channel(target)
        self._deadline = deadline_seconds
        self._signer = signer

    def _metadata(self, who: Principal) -> tuple[tuple[str, str], ...]:
        identity = Identity(
            tenant_id=who.tenant_id,
            user_id=who.user_id,
            role=who.role,
            request_id=current_request_id(),
            api_key_id=who.api_key_id or "",  # the key the usage is billed to; none for SSO
        )
        return self._signer.metadata(identity)

    async def close(self) -> None:
        await self._channel.close(grace=None)


class IngestionClient(_Client):
    def __init__(self, target: str, *, deadline_seconds: float, signer: Signer) -> None:
        super().__init__(target, deadline_seconds=deadline_seconds, signer=signer)
        self._stub = ingestion_pb2_grpc.IngestionServiceStub(self._channel)

    async def create_collection(self, who: Principal, *, name: str, description: str) -> ingestion_pb2.Collection:
        request = ingestion_pb2.CreateCollectionRequest(name=name, description=description)
        return await self._stub.CreateCollection(request, timeout=self._deadline, metadata=self._metadata(who))

    async def get_collection(self, who: Principal, collection_id: str) -> ingestion_pb2.Collection:
        request = ingestion_pb2.GetCollectionRequest(collection_id=collection_id)
        return await self._stub.GetCollection(request, timeout=self._deadline, metadata=self._metadata(who))

    async def list_collections(
        self, who: Principal, page: common_pb2.PageRequest
    ) -> ingestion_pb2.ListCollectionsResponse:
        request = ingestion_pb2.ListCollectionsRequest(page=page)
        return await self._stub.ListCollections(request, timeout=self._deadline, metadata=self._metadata(who))

    async def delete_collection(self, who: Principal, collection_id: str) -> None:
        request = ingestion_pb2.DeleteCollectionRequest(collection_id=collection_id)
        await self._stub.DeleteCollection(request, timeout=self._deadline, metadata=self._metadata(who))

    async def ingest_document(
        self, who: Principal, header: ingestion_pb2.DocumentHeader, content: bytes
    ) -> ingestion_pb2.Document:
        async def pieces() -> AsyncIterator[ingestion_pb2.IngestDocumentRequest]:
            yield ingestion_pb2.IngestDocumentRequest(header=header)
            for start in range(0, len(content), UPLOAD_PIECE_BYTES):
                yield ingestion_pb2.IngestDocumentRequest(content=content[start : start + UPLOAD_PIECE_BYTES])

        # An upload carries more bytes than a lookup: a longer deadline, still a deadline.
        return await self._stub.IngestDocument(pieces(), timeout=self._deadline * 6, metadata=self._metadata(who))

    async def update_document(
        self, who: Principal, header: ingestion_pb2.VersionHeader, content: bytes
    ) -> ingestion_pb2.DocumentUpdate:
        async def pieces() -> AsyncIterator[ingestion_pb2.UpdateDocumentRequest]:
            yield ingestion_pb2.UpdateDocumentRequest(header=header)
            for start in range(0, len(content), UPLOAD_PIECE_BYTES):
                yield ingestion_pb2.UpdateDocumentRequest(content=content[start : start + UPLOAD_PIECE_BYTES])

        return await self._stub.UpdateDocument(pieces(), timeout=self._deadline * 6, metadata=self._metadata(who))

    async def get_document(self, who: Principal, document_id: str) -> ingestion_pb2.Document:
        request = ingestion_pb2.GetDocumentRequest(document_id=document_id)
        return await self._stub.GetDocument(request, timeout=self._deadline, metadata=self._metadata(who))

    async def list_documents(
        self, who: Principal, collection_id: str, page: common_pb2.PageRequest
    ) -> ingestion_pb2.ListDocumentsResponse:
        request = ingestion_pb2.ListDocumentsRequest(collection_id=collection_id, page=page)
        return await self._stub.ListDocuments(request, timeout=self._deadline, metadata=self._metadata(who))

    async def delete_document(self, who: Principal, document_id: str) -> None:
        request = ingestion_pb2.DeleteDocumentRequest(document_id=document_id)
        await self._stub.DeleteDocument(request, timeout=self._deadline, metadata=self._metadata(who))

    async def list_sections(
        self, who: Principal, document_id: str, page: common_pb2.PageRequest
    ) -> ingestion_pb2.ListSectionsResponse:
        request = ingestion_pb2.ListSectionsRequest(document_id=document_id, page=page)
        return await self._stub.ListSections(request, timeout=self._deadline, metadata=self._metadata(who))

    async def get_characters(self, who: Principal, document_id: str) -> ingestion_pb2.CharactersReport:
        request = ingestion_pb2.GetCharactersRequest(document_id=document_id)
        return await self._stub.GetCharacters(request, timeout=self._deadline, metadata=self._metadata(who))

    async def get_pacing(self, who: Principal, document_id: str) -> ingestion_pb2.PacingReport:
        request = ingestion_pb2.GetPacingRequest(document_id=document_id)
        return await self._stub.GetPacing(request, timeout=self._deadline, metadata=self._metadata(who))

    async def get_artifacts(
        self, who: Principal, document_id: str, *, kinds: list[str], fresh: bool
    ) -> ingestion_pb2.GetArtifactsResponse:
        request = ingestion_pb2.GetArtifactsRequest(document_id=document_id, kinds=kinds, fresh=fresh)
        # Fresh artifacts may be a model's work, batch after batch: a longer deadline, still one.
        timeout = self._deadline * 6 if fresh else self._deadline
        return await self._stub.GetArtifacts(request, timeout=timeout, metadata=self._metadata(who))

    async def list_dead_letters(self, who: Principal) -> ingestion_pb2.ListDeadLettersResponse:
        request = ingestion_pb2.ListDeadLettersRequest()
        return await self._stub.ListDeadLetters(request, timeout=self._deadline, metadata=self._metadata(who))

    async def replay_dead_letter(self, who: Principal, seq: int) -> ingestion_pb2.DeadLetter:
        request = ingestion_pb2.ReplayDeadLetterRequest(seq=seq)
        return await self._stub.ReplayDeadLetter(request, timeout=self._deadline, metadata=self._metadata(who))

    def watch_document(
        self, who: Principal, document_id: str, *, timeout: float
    ) -> AsyncIterable[ingestion_pb2.DocumentProgress]:
        request = ingestion_pb2.WatchDocumentRequest(document_id=document_id)
        return self._stub.WatchDocument(request, timeout=timeout, metadata=self._metadata(who))


class RetrievalClient(_Client):
    def __init__(self, target: str, *, deadline_seconds: float, signer: Signer) -> None:
        super().__init__(target, deadline_seconds=deadline_seconds, signer=signer)
        self._stub = retrieval_pb2_grpc.RetrievalServiceStub(self._channel)

    async def search(self, who: Principal, request: retrieval_pb2.SearchRequest) -> retrieval_pb2.SearchResponse:
        return await self._stub.Search(request, timeout=self._deadline, metadata=self._metadata(who))

    async def get_chunks(self, who: Principal, chunk_ids: list[str]) -> retrieval_pb2.GetChunksResponse:
        request = retrieval_pb2.GetChunksRequest(chunk_ids=chunk_ids)
        return await self._stub.GetChunks(request, timeout=self._deadline, metadata=self._metadata(who))

    async def embed(self, who: Principal, request: retrieval_pb2.EmbedRequest) -> retrieval_pb2.EmbedResponse:
        return await self._stub.Embed(request, timeout=self._deadline, metadata=self._metadata(who))


class ChatClient(_Client):
    def __init__(self, target: str, *, deadline_seconds: float, signer: Signer) -> None:
        super().__init__(target, deadline_seconds=deadline_seconds, signer=signer)
        self._stub = chat_pb2_grpc.ChatServiceStub(self._channel)

    async def start_turn(self, who: Principal, request: chat_pb2.StartTurnRequest) -> chat_pb2.StartTurnResponse:
        # chat-svc retrieves, builds the prompt and holds the budget before it answers: a turn's
        # start takes longer than a lookup, still within a deadline.
        return await self._stub.StartTurn(request, timeout=self._deadline * 3, metadata=self._metadata(who))

    async def get_turn(self, who: Principal, conversation_id: str, turn_id: str) -> chat_pb2.Turn:
        request = chat_pb2.GetTurnRequest(conversation_id=conversation_id, turn_id=turn_id)
        return await self._stub.GetTurn(request, timeout=self._deadline, metadata=self._metadata(who))

    async def cancel_turn(self, who: Principal, conversation_id: str, turn_id: str) -> None:
        request = chat_pb2.CancelTurnRequest(conversation_id=conversation_id, turn_id=turn_id)
        await self._stub.CancelTurn(request, timeout=self._deadline, metadata=self._metadata(who))

    async def get_conversation(
        self, who: Principal, conversation_id: str, page: common_pb2.PageRequest | None = None
    ) -> chat_pb2.Conversation:
        request = chat_pb2.GetConversationRequest(conversation_id=conversation_id, page=page)
        return await self._stub.GetConversation(request, timeout=self._deadline, metadata=self._metadata(who))

    async def list_conversations(
        self, who: Principal, page: common_pb2.PageRequest
    ) -> chat_pb2.ListConversationsResponse:
        request = chat_pb2.ListConversationsRequest(page=page)
        return await self._stub.ListConversations(request, timeout=self._deadline, metadata=self._metadata(who))

    async def delete_conversation(self, who: Principal, conversation_id: str) -> None:
        request = chat_pb2.DeleteConversationRequest(conversation_id=conversation_id)
        await self._stub.DeleteConversation(request, timeout=self._deadline, metadata=self._metadata(who))

    async def export_conversation(
        self, who: Principal, conversation_id: str, format: str
    ) -> chat_pb2.ExportConversationResponse:
        request = chat_pb2.ExportConversationRequest(conversation_id=conversation_id, format=format)
        return await self._stub.ExportConversation(request, timeout=self._deadline, metadata=self._metadata(who))

    async def list_tools(self, who: Principal) -> chat_pb2.ListToolsResponse:
        request = chat_pb2.ListToolsRequest()
        return await self._stub.ListTools(request, timeout=self._deadline, metadata=self._metadata(who))

    async def run_tool(
        self, who: Principal, *, collection_ids: list[str], name: str, arguments: dict[str, object]
    ) -> chat_pb2.RunToolResponse:
        request = chat_pb2.RunToolRequest(
            collection_ids=collection_ids, name=name, arguments_json=json.dumps(arguments)
        )
        # A tool reads a script's sections or searches: a few calls inside chat-svc, one deadline.
        return await self._stub.RunTool(request, timeout=self._deadline * 2, metadata=self._metadata(who))


class UsageClient(_Client):
    def __init__(self, target: str, *, deadline_seconds: float, signer: Signer) -> None:
        super().__init__(target, deadline_seconds=deadline_seconds, signer=signer)
        self._stub = usage_pb2_grpc.UsageServiceStub(self._channel)

    async def get_usage(self, who: Principal, request: usage_pb2.GetUsageRequest) -> usage_pb2.GetUsageResponse:
        return await self._stub.GetUsage(request, timeout=self._deadline, metadata=self._metadata(who))

    async def get_summary(self, who: Principal, window: str) -> usage_pb2.GetSummaryResponse:
        request = usage_pb2.GetSummaryRequest(window=window)
        return await self._stub.GetSummary(request, timeout=self._deadline, metadata=self._metadata(who))

    async def check_quota(self, who: Principal) -> usage_pb2.CheckQuotaResponse:
        request = usage_pb2.CheckQuotaRequest()
        return await self._stub.CheckQuota(request, timeout=self._deadline, metadata=self._metadata(who))

    async def set_budget(self, who: Principal, monthly_limit_micros: int | None) -> usage_pb2.Budget:
        # None leaves the field unset: no limit.
        request = usage_pb2.SetBudgetRequest(monthly_limit_micros=monthly_limit_micros)
        return await self._stub.SetBudget(request, timeout=self._deadline, metadata=self._metadata(who))


@dataclass(frozen=True, slots=True)
class Clients:
    """The four clients, opened together by __main__ (and the tests) and closed together."""

    ingestion: IngestionClient
    retrieval: RetrievalClient
    chat: ChatClient
    usage: UsageClient

    @classmethod
    def open(
        cls,
        *,
        ingestion_target: str,
        retrieval_target: str,
        chat_target: str,
        usage_target: str,
        deadline_seconds: float,
        signer: Signer,
    ) -> "Clients":
        return cls(
            IngestionClient(ingestion_target, deadline_seconds=deadline_seconds, signer=signer),
            RetrievalClient(retrieval_target, deadline_seconds=deadline_seconds, signer=signer),
            ChatClient(chat_target, deadline_seconds=deadline_seconds, signer=signer),
            UsageClient(usage_target, deadline_seconds=deadline_seconds, signer=signer),
        )

    async def close(self) -> None:
        for client in (self.ingestion, self.retrieval, self.chat, self.usage):
            await client.close()
