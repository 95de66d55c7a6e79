"""RetrievalService over gRPC: translation between the protos and the Searcher, nothing more."""

from collections.abc import Iterable
from dataclasses import asdict

from google.protobuf.json_format import MessageToDict

from parley.kit.identity import caller
from parley.kit.rpc import Context
from parley.retrieval.hybrid_search import Mode, Searcher, search_query
from parley.retrieval.store import ChunkFilters, StoredChunk
from parley.v1 import retrieval_pb2, retrieval_pb2_grpc

_MODES = {
    retrieval_pb2.SEARCH_MODE_UNSPECIFIED: Mode.HYBRID,
    retrieval_pb2.SEARCH_MODE_HYBRID: Mode.HYBRID,
    retrieval_pb2.SEARCH_MODE_VECTOR: Mode.VECTOR,
    retrieval_pb2.SEARCH_MODE_KEYWORD: Mode.KEYWORD,
}


class RetrievalApi(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(self, searcher: Searcher) -> None:
        self._searcher = searcher

    async def Search(self, request: retrieval_pb2.SearchRequest, context: Context) -> retrieval_pb2.SearchResponse:
        query = search_query(
            text=request.query,
            collection_ids=request.collection_ids,
            k=request.k,
            # An enum value this build does not know falls back to the default, as UNSPECIFIED does.
            mode=_MODES.get(request.mode, Mode.HYBRID),
            # ChunkFilters names its fields as SearchFilters does.
            filters=ChunkFilters(**MessageToDict(request.filters, preserving_proto_field_name=True)),
        )
        who = caller(context)
        # The query's embedding is billed to the caller: its user and the API key it came with.
        found = await self._searcher.search(tenant_id=who.tenant_id, query=query, billed_to=who)
        return retrieval_pb2.SearchResponse(hits=_hits(found.hits), degraded=found.degraded)

    async def GetNeighbors(
        self, request: retrieval_pb2.GetNeighborsRequest, context: Context
    ) -> retrieval_pb2.GetNeighborsResponse:
        chunks = await self._searcher.neighbours(
            tenant_id=caller(context).tenant_id,
            document_id=request.document_id,
            ordinal=request.ordinal,
            before=request.before,
            after=request.after,
        )
        return retrieval_pb2.GetNeighborsResponse(chunks=_hits(chunks))

    async def GetChunks(
        self, request: retrieval_pb2.GetChunksRequest, context: Context
    ) -> retrieval_pb2.GetChunksResponse:
        chunks = await self._searcher.chunks_by_id(tenant_id=caller(context).tenant_id, chunk_ids=request.chunk_ids)
        return retrieval_pb2.GetChunksResponse(chunks=_hits(chunks))

    async def Embed(self, request: retrieval_pb2.EmbedRequest, context: Context) -> retrieval_pb2.EmbedResponse:
        who = caller(context)
        embedder, vectors, tokens = await self._searcher.embed(
            tenant_id=who.tenant_id, collection_ids=request.collection_ids, texts=request.texts, billed_to=who
        )
        return retrieval_pb2.EmbedResponse(
            model=embedder.name,
            dimensions=embedder.dimensions,
            embeddings=[retrieval_pb2.Embedding(values=vector) for vector in vectors],
            input_tokens=tokens,
        )


def _hits(chunks: Iterable[StoredChunk]) -> list[retrieval_pb2.ChunkHit]:
    # A StoredChunk's fields are ChunkHit's, by name.
    return [retrieval_pb2.ChunkHit(**asdict(chunk)) for chunk in chunks]
