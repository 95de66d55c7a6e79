"""Every outbound gRPC call of chat-svc, each behind a Protocol (so the domain can be tested with
fakes) and, in its gRPC form, with a deadline and the caller's identity.

The gRPC forms turn the status codes the domain decides on into kit errors: another tenant's
collection is `NotFound`, a budget that cannot hold the turn is `BudgetExceeded`, and a service
that is down or too slow is `Unavailable` (the caller may retry; nothing was started).
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from parley.kit.errors import BudgetExceeded, FailedPrecondition, NotFound, Unavailable
from parley.kit.identity import Identity, Signer
from parley.kit.rpc import open_channel
from parley.v1 import (
    common_pb2,
    ingestion_pb2,
    ingestion_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
)

# A conversation reads at most this many documents of a collection for its global context and
# tools, and a script's sections up to this many (a feature film has ~200 scenes).
MAX_DOCUMENTS = 200
MAX_SECTIONS = 2_000


@dataclass(frozen=True, slots=True)
class Hold:
    """Budget usage-svc holds for one turn until the turn's usage event (or a Settle) releases it."""

    reservation_id: str
    reserved_micros: int


class Retrieval(Protocol):
    async def search(
        self, identity: Identity, *, query: str, collection_ids: Sequence[str], k: int
    ) -> retrieval_pb2.SearchResponse:
        """A hybrid search: its hits, and the legs that could not run (`degraded`)."""
        ...

    async def chunks(self, identity: Identity, chunk_ids: Sequence[str]) -> list[retrieval_pb2.ChunkHit]:
        """The caller's chunks among these ids, in no particular order; unknown ids are left out."""
        ...

    async def neighbours(
        self, identity: Identity, *, document_id: str, ordinal: int, before: int, after: int
    ) -> list[retrieval_pb2.ChunkHit]:
        """The chunks around one, in document order, itself included."""
        ...


class Collections(Protocol):
    async def require(self, identity: Identity, collection_id: str) -> None:
        """Raise NotFound unless the collection exists for the caller's tenant."""
        ...


class Scripts(Protocol):
    """What ingestion knows of a conversation's documents: their artifacts (outline, sheets, scene
    cards…), sections and screenplay reports, for the global context and the tools."""

    async def documents(self, identity: Identity, collection_id: str) -> list[ingestion_pb2.Document]:
        """Every document of the collection (at most `MAX_DOCUMENTS`), newest first."""
        ...

    async def artifacts(
        self, identity: Identity, document_id: str, kinds: Sequence[str] = ()
    ) -> list[ingestion_pb2.Artifact]:
        """The stored artifacts of a document (of `kinds`, when given), never written on the way."""
        ...

    async def sections(self, identity: Identity, document_id: str) -> list[ingestion_pb2.Section]:
        """The current version's sections in order (a screenplay's scenes)."""
        ...

    async def characters(self, identity: Identity, document_id: str) -> ingestion_pb2.CharactersReport: ...

    async def pacing(self, identity: Identity, document_id: str) -> ingestion_pb2.PacingReport: ...


class Budget(Protocol):
    async def reserve(
        self,
        identity: Identity,
        *,
        provider: str,
        model: str,
        input_tokens: int,
        max_output_tokens: int,
        idempotency_key: str = "",
        fallbacks: Sequence[tuple[str, str]] = (),
    ) -> Hold:
        """Raise BudgetExceeded when the tenant's budget cannot hold the call's upper bound. The same
        `idempotency_key` again answers the hold it placed (whatever the tokens). `fallbacks`: the
        (provider, model) of the other routes the call may take; the hold is priced at the dearest."""
        ...

    async def release(self, identity: Identity, reservation_id: str) -> None: ...

    async def price(self, identity: Identity, *, provider: str, model: str, usage: common_pb2.TokenUsage) -> int:
        """What the call's usage costs, in micro-USD, at the prices usage-svc bills it at."""
        ...


_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class HoldUncertain(Unavailable):
    """Reserve failed after it may have reached usage-svc (a deadline, a connection lost mid-call):
    a hold may have been placed.

    Every unreachable failure is uncertain, even one whose last words are "failed to connect": the
    channel retries an UNAVAILABLE call, so a first attempt that reached usage-svc, placed the hold
    and lost its answer when usage-svc died ends with the retries' connection refusals."""


def _unreachable(error: grpc.aio.AioRpcError, service: str) -> Exception:
    """What a failed call becomes for the domain: Unavailable when the service could not answer."""
    if error.code() in _UNREACHABLE:
        return Unavailable(f"{service} is unavailable; try again")
    return error


class _Client:
    def __init__(self, target: str, *, deadline_seconds: float, signer: Signer) -> None:
        self._channel: grpc.aio.Channel = open_channel(target)
        self._deadline = deadline_seconds
        # chat-svc signs the identity it forwards itself: a turn outlives the gateway's signature.
        self._signer = signer

    async def close(self) -> None:
        await self._channel.close(grace=None)


class RetrievalClient(_Client):
    def __init__(self, target: str, *, deadline_seconds: float, signer: Signer) -> None:
        super().__init__(target, deadline_seconds=deadline_seconds, signer=signer)
        self._stub = retrieval_pb2_grpc.RetrievalServiceStub(self._channel)

    async def search(
        self, identity: Identity, *, query: str, collection_ids: Sequence[str], k: int
    ) -> retrieval_pb2.SearchResponse:
        request = retrieval_pb2.SearchRequest(
            query=query, collection_ids=list(collection_ids), k=k, mode=retrieval_pb2.SEARCH_MODE_HYBRID
        )
        try:
            return await self._stub.Search(request, timeout=self._deadline, metadata=self._signer.metadata(identity))
        except grpc.aio.AioRpcError as error:
            raise _unreachable(error, "retrieval") from None

    async def chunks(self, identity: Identity, chunk_ids: Sequence[str]) -> list[retrieval_pb2.ChunkHit]:
        request = retrieval_pb2.GetChunksRequest(chunk_ids=list(chunk_ids))
        try:
            response = await self._stub.GetChunks(
                request, timeout=self._deadline, metadata=self._signer.metadata(identity)
            )
        except grpc.aio.AioRpcError as error:
            raise _unreachable(error, "retrieval") from None
        return list(response.chunks)

    async def neighbours(
        self, identity: Identity, *, document_id: str, ordinal: int, before: int, after: int
    ) -> list[retrieval_pb2.ChunkHit]:
        request = retrieval_pb2.GetNeighborsRequest(
            document_id=document_id, ordinal=ordinal, before=before, after=after
        )
        try:
            response = await self._stub.GetNeighbors(
                request, timeout=self._deadline, metadata=self._signer.metadata(identity)
            )
        except grpc.aio.AioRpcError as error:
            raise _unreachable(error, "retrieval") from None
        return list(response.chunks)


class IngestionClient(_Client):
    def __init__(self, target: str, *, deadline_seconds: float, signer: Signer) -> None:
        super().__init__(target, deadline_seconds=deadline_seconds, signer=signer)
        self._stub = ingestion_pb2_grpc.IngestionServiceStub(self._channel)

    async def require(self, identity: Identity, collection_id: str) -> None:
        request = ingestion_pb2.GetCollectionRequest(collection_id=collection_id)
        try:
            await self._stub.GetCollection(request, timeout=self._deadline, metadata=self._signer.metadata(identity))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"collection {collection_id} not found") from None
            raise _unreachable(error, "ingestion") from None

    async def documents(self, identity: Identity, collection_id: str) -> list[ingestion_pb2.Document]:
        found: list[ingestion_pb2.Document] = []
        token = ""
        while len(found) < MAX_DOCUMENTS:
            request = ingestion_pb2.ListDocumentsRequest(
                collection_id=collection_id, page=common_pb2.PageRequest(page_size=100, page_token=token)
            )
            response = await self._call(self._stub.ListDocuments, request, identity)
            found += response.documents
            token = response.next_page_token
            if not token:
                break
        return found[:MAX_DOCUMENTS]

    async def artifacts(
        self, identity: Identity, document_id: str, kinds: Sequence[str] = ()
    ) -> list[ingestion_pb2.Artifact]:
        request = ingestion_pb2.GetArtifactsRequest(document_id=document_id, kinds=list(kinds))
        return list((await self._call(self._stub.GetArtifacts, request, identity)).artifacts)

    async def sections(self, identity: Identity, document_id: str) -> list[ingestion_pb2.Section]:
        found: list[ingestion_pb2.Section] = []
        token = ""
        while True:
            request = ingestion_pb2.ListSectionsRequest(
                document_id=document_id, page=common_pb2.PageRequest(page_size=100, page_token=token)
            )
            response = await self._call(self._stub.ListSections, request, identity)
            found += response.sections
            token = response.next_page_token
            if not token or len(found) >= MAX_SECTIONS:
                return found

    async def characters(self, identity: Identity, document_id: str) -> ingestion_pb2.CharactersReport:
        request = ingestion_pb2.GetCharactersRequest(document_id=document_id)
        report: ingestion_pb2.CharactersReport = await self._call(self._stub.GetCharacters, request, identity)
        return report

    async def pacing(self, identity: Identity, document_id: str) -> ingestion_pb2.PacingReport:
        request = ingestion_pb2.GetPacingRequest(document_id=document_id)
        report: ingestion_pb2.PacingReport = await self._call(self._stub.GetPacing, request, identity)
        return report

    async def _call(self, method: Any, request: Any, identity: Identity) -> Any:
        """One unary call with the deadline and identity; NOT_FOUND and FAILED_PRECONDITION become
        the domain's errors (a tool reports them to the model), an unreachable service Unavailable."""
        try:
            return await method(request, timeout=self._deadline, metadata=self._signer.metadata(identity))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(error.details() or "not found") from None
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise FailedPrecondition(error.details() or "not possible for this document") from None
            raise _unreachable(error, "ingestion") from None


class UsageClient(_Client):
    def __init__(self, target: str, *, deadline_seconds: float, signer: Signer) -> None:
        super().__init__(target, deadline_seconds=deadline_seconds, signer=signer)
        self._stub = usage_pb2_grpc.UsageServiceStub(self._channel)

    async def reserve(
        self,
        identity: Identity,
        *,
        provider: str,
        model: str,
        input_tokens: int,
        max_output_tokens: int,
        idempotency_key: str = "",
        fallbacks: Sequence[tuple[str, str]] = (),
    ) -> Hold:
        # A key of this call's own (a turn's, or a fresh one), so gRPC's retries of it hold once. Not
        # the request id: a client chooses that, and reusing one must not hand back an earlier hold
        # instead of a new check.
        request = usage_pb2.ReserveRequest(
            provider=provider,
            model=model,
            input_tokens=input_tokens,
            max_output_tokens=max_output_tokens,
            idempotency_key=idempotency_key or uuid.uuid4().hex,
            fallbacks=[usage_pb2.ModelRoute(provider=name, model=route_model) for name, route_model in fallbacks],
        )
        try:
            response = await self._stub.Reserve(
                request, timeout=self._deadline, metadata=self._signer.metadata(identity)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise BudgetExceeded(error.details() or "the monthly budget is spent") from None
            if error.code() in _UNREACHABLE:
                raise HoldUncertain("usage is unavailable; try again") from None
            raise _unreachable(error, "usage") from None
        return Hold(response.reservation_id, response.reserved_micros)

    async def release(self, identity: Identity, reservation_id: str) -> None:
        request = usage_pb2.SettleRequest(reservation_id=reservation_id)
        await self._stub.Settle(request, timeout=self._deadline, metadata=self._signer.metadata(identity))

    async def price(self, identity: Identity, *, provider: str, model: str, usage: common_pb2.TokenUsage) -> int:
        request = usage_pb2.PriceUsageRequest(provider=provider, model=model, usage=usage)
        try:
            response = await self._stub.PriceUsage(
                request, timeout=self._deadline, metadata=self._signer.metadata(identity)
            )
        except grpc.aio.AioRpcError as error:
            raise _unreachable(error, "usage") from None
        return response.cost_micros
