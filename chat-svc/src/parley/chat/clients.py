"""Every outbound gRPC call of chat-svc, each with a deadline and the caller's identity."""

from collections.abc import Sequence

import grpc

from parley.kit.identity import Identity
from parley.kit.rpc import open_channel
from parley.v1 import retrieval_pb2, retrieval_pb2_grpc


class RetrievalClient:
    def __init__(self, target: str, *, deadline_seconds: float) -> None:
        self._channel: grpc.aio.Channel = open_channel(target)
        self._stub = retrieval_pb2_grpc.RetrievalServiceStub(self._channel)
        self._deadline = deadline_seconds

    async def search(
        self, identity: Identity, *, query: str, collection_ids: Sequence[str], k: int
    ) -> list[retrieval_pb2.ChunkHit]:
        request = retrieval_pb2.SearchRequest(
            query=query, collection_ids=list(collection_ids), k=k, mode=retrieval_pb2.SEARCH_MODE_HYBRID
        )
        response = await self._stub.Search(request, timeout=self._deadline, metadata=identity.metadata())
        return list(response.hits)

    async def close(self) -> None:
        await self._channel.close()
