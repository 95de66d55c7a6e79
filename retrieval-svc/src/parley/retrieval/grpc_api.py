"""RetrievalService over gRPC: translation between the protos and hybrid_search, nothing more."""

from collections.abc import Iterable

import grpc

from parley.kit.db import Sessions
from parley.kit.identity import caller
from parley.retrieval import hybrid_search
from parley.retrieval.embeddings import Embedder
from parley.retrieval.hybrid_search import Mode
from parley.retrieval.store import StoredChunk
from parley.v1 import retrieval_pb2, retrieval_pb2_grpc

_MODES = {
    retrieval_pb2.SEARCH_MODE_UNSPECIFIED: Mode.HYBRID,
    retrieval_pb2.SEARCH_MODE_HYBRID: Mode.HYBRID,
    retrieval_pb2.SEARCH_MODE_VECTOR: Mode.VECTOR,
    retrieval_pb2.SEARCH_MODE_KEYWORD: Mode.KEYWORD,
}


class RetrievalApi(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(self, sessions: Sessions, embedder: Embedder) -> None:
        self._sessions = sessions
        self._embedder = embedder

    async def Search(
        self, request: retrieval_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.SearchResponse:
        query = hybrid_search.search_query(
            text=request.query,
            collection_ids=list(request.collection_ids),
            k=request.k,
            # An enum value this build does not know falls back to the default, as UNSPECIFIED does.
            mode=_MODES.get(request.mode, Mode.HYBRID),
            document_ids=list(request.filters.document_ids),
        )
        hits = await hybrid_search.search(
            sessions=self._sessions, embedder=self._embedder, tenant_id=caller(context).tenant_id, query=query
        )
        return retrieval_pb2.SearchResponse(hits=_hits(hits))

    async def GetNeighbors(
        self, request: retrieval_pb2.GetNeighborsRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.GetNeighborsResponse:
        chunks = await hybrid_search.neighbours(
            sessions=self._sessions,
            tenant_id=caller(context).tenant_id,
            document_id=request.document_id,
            ordinal=request.ordinal,
            before=request.before,
            after=request.after,
        )
        return retrieval_pb2.GetNeighborsResponse(chunks=_hits(chunks))

    async def GetChunks(
        self, request: retrieval_pb2.GetChunksRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.GetChunksResponse:
        chunks = await hybrid_search.chunks_by_id(
            sessions=self._sessions, tenant_id=caller(context).tenant_id, chunk_ids=list(request.chunk_ids)
        )
        return retrieval_pb2.GetChunksResponse(chunks=_hits(chunks))


def _hits(chunks: Iterable[StoredChunk]) -> list[retrieval_pb2.ChunkHit]:
    return [
        retrieval_pb2.ChunkHit(
            chunk_id=chunk.chunk_id,
            document_id=chunk.document_id,
            collection_id=chunk.collection_id,
            document_title=chunk.document_title,
            ordinal=chunk.ordinal,
            heading=chunk.heading,
            text=chunk.text,
            token_count=chunk.token_count,
            score=chunk.score,
        )
        for chunk in chunks
    ]
