"""Start retrieval: migrations, the embedders, gRPC, the two index consumers, the outbox relay, and
the background work on vectors (the configured model's index, re-embedding after a switch) and
on the keyword index (the largest collections' postings loaded into memory)."""

import asyncio
from dataclasses import fields
from pathlib import Path

from parley.kit.outbox import OutboxRelay
from parley.kit.runtime import ServiceRuntime
from parley.retrieval import events, models
from parley.retrieval.bm25 import Bm25Parameters
from parley.retrieval.config import Settings
from parley.retrieval.embedder_registry import build_embedder, embedder_named
from parley.retrieval.grpc_api import RetrievalApi
from parley.retrieval.hybrid_search import Searcher
from parley.retrieval.indexing import Indexer
from parley.retrieval.keyword_index import KeywordIndex
from parley.retrieval.vectors import Vectors
from parley.v1 import retrieval_pb2_grpc


async def main() -> None:
    settings = Settings()
    runtime = await ServiceRuntime.start(
        "retrieval", settings, schema="retrieval", migrations=Path(__file__).parent / "migrations"
    )
    vectors = Vectors(
        sessions=runtime.sessions,
        engine=runtime.engine,
        embedder=build_embedder(settings),
        others=lambda name: embedder_named(name, settings),
    )
    keyword_index = KeywordIndex(
        sessions=runtime.sessions,
        max_postings=settings.bm25_memory_postings,
        load_inline_chunks=settings.bm25_memory_inline_chunks,
    )
    try:
        # Models loaded before serving (in a worker thread): the first search must not wait for one.
        await vectors.start()
        runtime.spawn(vectors.ensure_indexes(), name="vector-indexes")
        # Each of BM25's parameters is the setting of its name, prefixed bm25_.
        bm25 = Bm25Parameters(
            **{field.name: getattr(settings, f"bm25_{field.name}") for field in fields(Bm25Parameters)}
        )
        runtime.spawn(keyword_index.warm(runtime.stopping), name="keyword-index")
        relay = OutboxRelay(sessions=runtime.sessions, table=models.outbox, js=runtime.js)
        runtime.spawn(relay.run(runtime.stopping), name="outbox")
        await runtime.serve_grpc(
            (
                retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server,
                RetrievalApi(
                    Searcher(
                        sessions=runtime.sessions,
                        vectors=vectors,
                        bm25=bm25,
                        keyword_index=keyword_index,
                        keyword_weight=settings.hybrid_keyword_weight,
                        ef_search=settings.hnsw_ef_search,
                    )
                ),
                "parley.v1.RetrievalService",
            )
        )
        indexer = Indexer(sessions=runtime.sessions, vectors=vectors, bm25=bm25)
        for consumer in events.consumers(
            indexer=indexer, relay=relay, indexing_concurrency=settings.indexing_concurrency
        ):
            runtime.consume(consumer)
        runtime.spawn(vectors.reembed_until_current(runtime.stopping), name="reembed")
        runtime.spawn(indexer.backfill_postings(runtime.stopping), name="backfill-postings")
        await runtime.wait_for_signal()
    finally:
        await keyword_index.close()
        await runtime.close()
        await vectors.close()


if __name__ == "__main__":
    asyncio.run(main())
