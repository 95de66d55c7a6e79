"""Every embedding is billed through the path chat's usage takes: retrieval's outbox → usage.recorded
on JetStream → usage-svc's recorder, priced from its table, with no budget hold to settle. The
embeddings API is the OpenAI fake; everything else is real (PostgreSQL, NATS, both services' code)."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.retrieval
import parley.usage
from parley.kit import bus, db
from parley.kit.contracts import USAGE_EMBEDDING
from parley.kit.db import Sessions
from parley.kit.outbox import OutboxRelay
from parley.kit.testing import Infra
from parley.retrieval import models as retrieval_models
from parley.retrieval.embedding_openai import OpenAiEmbedder
from parley.retrieval.embeddings import LocalEmbedder
from parley.retrieval.hybrid_search import Mode, Searcher, search_query
from parley.retrieval.indexing import Indexer
from parley.retrieval.vectors import Vectors, embedding_input
from parley.usage import events as usage_events
from parley.usage.models import usage_events as usage_table
from parley.usage.recording import Recorder
from parley.v1 import events_pb2
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.scripting import count

MODEL = "text-embedding-3-small"
PRICE_PER_MILLION_MICROS = 20_000  # $0.02 per million input tokens
WITHIN_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Row:
    kind: str
    provider: str
    model: str
    input_tokens: int
    cost_micros: int
    success: bool
    reservation_id: str


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def sessions(engine: AsyncEngine, infra: Infra) -> AsyncIterator[Sessions]:
    """Both schemas, retrieval's outbox relayed and usage-svc's recorder consuming, as in production."""
    for schema, package in (("retrieval", parley.retrieval), ("usage", parley.usage)):
        await db.migrate(engine, schema=schema, migrations=Path(package.__file__).parent / "migrations")
    sessions = db.session_factory(engine)
    nc = await bus.connect(infra.nats_url, name="embedding-billing-tests")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    stop = asyncio.Event()
    recorder = usage_events.recorder_consumer(
        Recorder(sessions=sessions), durable=f"usage-recorder-billing-{uuid.uuid4().hex[:8]}"
    )
    tasks = [
        asyncio.create_task(
            OutboxRelay(sessions=sessions, table=retrieval_models.outbox, js=js, poll_seconds=0.1).run(stop)
        ),
        asyncio.create_task(bus.run_consumer(js, recorder, stop)),
    ]
    try:
        yield sessions
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await js.delete_consumer(usage_events.STREAM, recorder.durable)
        await nc.close()


async def rows(sessions: Sessions, tenant_id: str, expected: int) -> list[Row]:
    """The tenant's usage rows, oldest first, once there are `expected` of them."""
    deadline = asyncio.get_running_loop().time() + WITHIN_SECONDS
    while True:
        async with sessions() as session:
            found = (
                await session.execute(
                    select(*(usage_table.c[name] for name in Row.__dataclass_fields__))
                    .where(usage_table.c.tenant_id == tenant_id)
                    .order_by(usage_table.c.occurred_at)
                )
            ).all()
        if len(found) >= expected or asyncio.get_running_loop().time() > deadline:
            return [Row(*row) for row in found]
        await asyncio.sleep(0.1)


def chunks_upserted(tenant_id: str, collection_id: str, texts: list[str]) -> events_pb2.ChunksUpserted:
    document_id = str(uuid.uuid4())
    return events_pb2.ChunksUpserted(
        tenant_id=tenant_id,
        collection_id=collection_id,
        document_id=document_id,
        version=1,
        document_title="Manual",
        chunks=[
            events_pb2.ChunkRecord(chunk_id=str(uuid.uuid4()), ordinal=ordinal, heading="Boiler", text=body)
            for ordinal, body in enumerate(texts)
        ],
    )


def cost(tokens: int) -> int:
    return -(-tokens * PRICE_PER_MILLION_MICROS // 1_000_000)


async def test_indexing_and_a_new_query_are_each_billed_at_the_openai_price(
    sessions: Sessions, engine: AsyncEngine, fake: FakeOpenAI, tenant_id: str
) -> None:
    embedder = OpenAiEmbedder(api_key=fake.api_key, base_url=fake.base_url, model=MODEL, dimensions=64)
    vectors = Vectors(sessions=sessions, engine=engine, embedder=embedder)
    collection_id = str(uuid.uuid4())
    # Long enough that the bill is more than the one micro-dollar any call rounds up to.
    texts = [f"Descale the boiler every {n} shots with citric acid, then rinse it twice. " * 40 for n in (200, 300)]
    await Indexer(sessions=sessions, vectors=vectors).index_version(chunks_upserted(tenant_id, collection_id, texts))
    indexed_tokens = sum(count(embedding_input("Boiler", body)) for body in texts)

    searcher = Searcher(sessions=sessions, vectors=vectors)
    query = search_query(text="how often to descale", collection_ids=[collection_id], k=5, mode=Mode.HYBRID)
    assert (await searcher.search(tenant_id=tenant_id, query=query)).hits
    await searcher.search(tenant_id=tenant_id, query=query)  # asked again: its vector is cached, not billed

    billed = await rows(sessions, tenant_id, expected=2)
    assert billed == [
        Row(USAGE_EMBEDDING, "openai", MODEL, indexed_tokens, cost(indexed_tokens), True, ""),
        Row(
            USAGE_EMBEDDING,
            "openai",
            MODEL,
            count("how often to descale"),
            cost(count("how often to descale")),
            True,
            "",
        ),
    ]
    assert billed[0].cost_micros > 1
    await embedder.close()


async def test_local_embeddings_are_recorded_at_no_cost(
    sessions: Sessions, engine: AsyncEngine, tenant_id: str
) -> None:
    vectors = Vectors(sessions=sessions, engine=engine, embedder=LocalEmbedder())
    await Indexer(sessions=sessions, vectors=vectors).index_version(
        chunks_upserted(tenant_id, str(uuid.uuid4()), [f"Knead the dough {tenant_id}"])
    )
    [row] = await rows(sessions, tenant_id, expected=1)
    assert (row.kind, row.provider, row.model, row.cost_micros, row.success) == (
        USAGE_EMBEDDING,
        "local",
        LocalEmbedder().name,
        0,
        True,
    )
    assert row.input_tokens > 0
