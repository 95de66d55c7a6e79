"""Vectors per model against real PostgreSQL (pgvector) and the OpenAI embeddings API's fake: a
switch of model keeps search whole, the same text is embedded once, every call is billed, and
each model's HNSW index is built by the service and used by its searches.

A switch re-embeds and then deletes vectors across every tenant, so this module runs in a
database of its own: the other modules' chunks stay as they are."""

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from alembic import command
from alembic.config import Config
from nats.aio.msg import Msg
from sqlalchemy import Connection, event, func, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.retrieval
from parley.kit import db
from parley.kit.contracts import CHUNKS_INDEXED, CHUNKS_UPSERTED, USAGE_EMBEDDING, USAGE_RECORDED, index_failed_msg_id
from parley.kit.db import Sessions
from parley.kit.errors import Unavailable
from parley.kit.identity import Identity
from parley.kit.outbox import OutboxRelay
from parley.kit.testing import Infra
from parley.retrieval import events, models, store
from parley.retrieval.config import Settings
from parley.retrieval.embedder_registry import build_embedder, embedder_named
from parley.retrieval.embedding_openai import OpenAiEmbedder
from parley.retrieval.embeddings import Embedded, Embedder, LocalEmbedder
from parley.retrieval.hybrid_search import Mode, Searcher, SearchQuery, search_query
from parley.retrieval.indexing import Indexer
from parley.retrieval.minilm import MiniLmEmbedder
from parley.retrieval.store import SearchScope
from parley.retrieval.vectors import Vectors, embedding_input, embedding_key
from parley.v1 import events_pb2
from tests.fakes.openai_server import FakeOpenAI, fake_embedding
from tests.fakes.scripting import Script, count

MIGRATIONS = Path(parley.retrieval.__file__).parent / "migrations"
OPENAI_MODEL = "text-embedding-3-small"
TEXTS = [
    "The warp engines draw power from the antimatter reactor.",
    "Knead the dough with flour, water, yeast and salt.",
    "Tomatoes in the garden need sun and regular watering.",
    "The captain logs every jump between star systems.",
]


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    sessions: Sessions


@asynccontextmanager
async def scratch_database(infra: Infra, engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """A database of its own on the test server, dropped afterwards."""
    name = f"retrieval_vectors_{uuid.uuid4().hex[:8]}"
    admin = await engine.execution_options(isolation_level="AUTOCOMMIT").connect()
    await admin.execute(text(f'CREATE DATABASE "{name}"'))
    own = db.create_engine(make_url(db.async_url(infra.database_url)).set(database=name).render_as_string(False))
    try:
        yield own
    finally:
        await own.dispose()
        await admin.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.close()


@pytest_asyncio.fixture(scope="module")
async def database(infra: Infra, engine: AsyncEngine) -> AsyncIterator[Database]:
    async with scratch_database(infra, engine) as own:
        await db.migrate(own, schema="retrieval", migrations=MIGRATIONS)
        yield Database(engine=own, sessions=db.session_factory(own))


def upgrade_to(connection: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["schema"] = "retrieval"
    command.upgrade(config, revision)


async def test_the_migration_moves_each_vector_under_the_model_that_made_it(infra: Infra, engine: AsyncEngine) -> None:
    async with scratch_database(infra, engine) as own, own.begin() as connection:
        await connection.execute(text("CREATE SCHEMA retrieval"))
        await connection.run_sync(upgrade_to, "0004")
        for chunk_id, embedding, model in (
            ("made-by-minilm", "[" + ",".join(["0.05"] * 384) + "]", MiniLmEmbedder.name),
            ("no-words", None, "local-hash-384-v1"),
            ("never-tagged", "[" + ",".join(["0.05"] * 384) + "]", ""),
        ):
            await connection.execute(
                text(
                    "INSERT INTO retrieval.chunks (chunk_id, tenant_id, collection_id, document_id, version,"
                    " ordinal, text, token_count, embedding, embedding_model)"
                    " VALUES (:chunk_id, 't', 'c', 'd', 1, 0, 'x', 1, CAST(:embedding AS vector), :model)"
                ),
                {"chunk_id": chunk_id, "embedding": embedding, "model": model},
            )
        await connection.run_sync(upgrade_to, "head")
        moved = await connection.execute(
            text(
                "SELECT chunk_id, model, tenant_id, vector_dims(embedding) FROM retrieval.chunk_embeddings"
                " ORDER BY chunk_id"
            )
        )
        assert [tuple(row) for row in moved] == [
            ("made-by-minilm", MiniLmEmbedder.name, "t", 384),
            ("no-words", "local-hash-384-v1", "t", None),
        ]
        left = await connection.execute(
            text(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'retrieval' AND table_name = 'chunks' AND column_name LIKE 'embedding%'"
            )
        )
        assert left.all() == []


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def openai_fake(fake: FakeOpenAI) -> FakeOpenAI:
    fake.reset()
    return fake


def openai_embedder(fake: FakeOpenAI, *, dimensions: int = 64, **options: int) -> OpenAiEmbedder:
    return OpenAiEmbedder(
        api_key=fake.api_key, base_url=fake.base_url, model=OPENAI_MODEL, dimensions=dimensions, **options
    )


class Spy:
    """An embedder as it is, recording every text that reaches it."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.texts: list[str] = []
        self.name, self.provider, self.model, self.dimensions = (
            inner.name,
            inner.provider,
            inner.model,
            inner.dimensions,
        )

    async def embed(self, texts: Sequence[str]) -> Embedded:
        self.texts.extend(texts)
        return await self.inner.embed(texts)

    async def warm_up(self) -> None:
        await self.inner.warm_up()

    async def close(self) -> None:
        await self.inner.close()


def upserted(tenant_id: str, collection_id: str, texts: Sequence[str]) -> events_pb2.ChunksUpserted:
    document_id = str(uuid.uuid4())
    return events_pb2.ChunksUpserted(
        tenant_id=tenant_id,
        collection_id=collection_id,
        document_id=document_id,
        version=1,
        document_title="Log",
        chunks=[
            events_pb2.ChunkRecord(
                chunk_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{document_id}:{ordinal}")),
                ordinal=ordinal,
                heading="",
                text=body,
                token_count=len(body.split()),
            )
            for ordinal, body in enumerate(texts)
        ],
    )


async def vector_hits(searcher: Searcher, tenant_id: str, collection_id: str, query: str) -> list[str]:
    found = await searcher.search(
        tenant_id=tenant_id,
        query=search_query(text=query, collection_ids=[collection_id], k=10, mode=Mode.VECTOR),
    )
    return sorted(hit.text for hit in found.hits)


async def vector_models(database: Database) -> dict[str, int]:
    async with database.sessions() as session:
        rows = await session.execute(
            select(models.chunk_embeddings.c.model, func.count()).group_by(models.chunk_embeddings.c.model)
        )
        return {row[0]: row[1] for row in rows}


async def billed(database: Database, tenant_id: str) -> list[events_pb2.UsageRecorded]:
    """The usage events waiting in the outbox for the tenant (no relay runs in this module)."""
    async with database.sessions() as session:
        payloads = await session.execute(
            select(models.outbox.c.payload)
            .where(models.outbox.c.subject == USAGE_RECORDED)
            .order_by(models.outbox.c.id)
        )
        events = [events_pb2.UsageRecorded.FromString(payload) for payload in payloads.scalars()]
    return [event for event in events if event.tenant_id == tenant_id]


async def test_a_switch_of_model_keeps_search_whole_and_embeds_each_text_once(
    database: Database, openai_fake: FakeOpenAI, tenant_id: str
) -> None:
    collection_id = str(uuid.uuid4())
    local = Spy(LocalEmbedder())
    before = Vectors(sessions=database.sessions, engine=database.engine, embedder=local)
    await before.start()
    await Indexer(sessions=database.sessions, vectors=before).index_version(
        upserted(tenant_id, collection_id, TEXTS[:3])
    )

    # The service restarts configured for OpenAI; the stored local vectors name their model.
    remote = Spy(openai_embedder(openai_fake))
    after = Vectors(
        sessions=database.sessions,
        engine=database.engine,
        embedder=remote,
        others=lambda name: local if name == local.name else None,
    )
    await after.start()
    searcher = Searcher(sessions=database.sessions, vectors=after)
    indexer = Indexer(sessions=database.sessions, vectors=after)
    # A document indexed during the switch repeats a text of the first: that text reaches the model once.
    await indexer.index_version(upserted(tenant_id, collection_id, [TEXTS[0], TEXTS[3]]))
    assert await after.reembed_stale(batch=1) is not None  # one more chunk has the new model's vector

    # Half re-embedded: answered from the previous model's vectors, which every chunk has.
    assert await vector_hits(searcher, tenant_id, collection_id, "warp engine power") == sorted([*TEXTS, TEXTS[0]])
    assert local.texts[-1] == "warp engine power"
    assert "warp engine power" not in remote.texts

    await after.reembed_until_current(asyncio.Event())
    assert await vector_hits(searcher, tenant_id, collection_id, "bread dough") == sorted([*TEXTS, TEXTS[0]])
    assert remote.texts[-1] == "bread dough"
    assert "bread dough" not in local.texts
    # Once the switch is done the previous model's vectors go (the cache keeps them).
    assert await vector_models(database) == {remote.name: 5}

    # Indexing, the switch and the re-embed embedded each distinct text with each model once.
    chunk_texts = [embedding_input("", body) for body in TEXTS]
    assert sorted(text for text in openai_fake.embedded_inputs if text in chunk_texts) == sorted(chunk_texts)
    assert sorted(text for text in local.texts if text in chunk_texts) == sorted(chunk_texts)


async def test_a_text_in_two_documents_is_embedded_once(database: Database, openai_fake: FakeOpenAI) -> None:
    vectors = Vectors(sessions=database.sessions, engine=database.engine, embedder=openai_embedder(openai_fake))
    indexer = Indexer(sessions=database.sessions, vectors=vectors)
    shared, own = f"A paragraph both manuals carry {uuid.uuid4()}", f"Only the second has this {uuid.uuid4()}"
    # Two tenants even: the cache holds vectors of texts, not tenant data.
    await indexer.index_version(upserted(str(uuid.uuid4()), str(uuid.uuid4()), [shared]))
    await indexer.index_version(upserted(str(uuid.uuid4()), str(uuid.uuid4()), [shared, own]))
    assert [received.body["input"] for received in openai_fake.received] == [[shared], [own]]


async def test_every_call_that_reaches_a_model_is_billed_and_cache_hits_are_not(
    database: Database, openai_fake: FakeOpenAI, tenant_id: str
) -> None:
    collection_id = str(uuid.uuid4())
    vectors = Vectors(sessions=database.sessions, engine=database.engine, embedder=openai_embedder(openai_fake))
    contents = [f"{body} ({tenant_id})" for body in TEXTS[:2]]
    await Indexer(sessions=database.sessions, vectors=vectors).index_version(
        upserted(tenant_id, collection_id, contents)
    )
    query = f"engines of {tenant_id}"
    searcher = Searcher(sessions=database.sessions, vectors=vectors)
    await vector_hits(searcher, tenant_id, collection_id, query)
    await vector_hits(searcher, tenant_id, collection_id, query)  # the same query: its vector is cached

    events = await billed(database, tenant_id)
    assert [(event.kind, event.provider, event.model, event.success) for event in events] == [
        (USAGE_EMBEDDING, "openai", OPENAI_MODEL, True)
    ] * 2
    assert [event.usage.input_tokens for event in events] == [sum(map(count, contents)), count(query)]
    assert all(event.event_id and event.latency_ms >= 0 for event in events)


async def test_a_callers_query_and_texts_are_billed_to_their_user_and_api_key(
    database: Database, openai_fake: FakeOpenAI, tenant_id: str
) -> None:
    """Per-user and per-key budgets read these: the identity the call came with (kit.identity)."""
    collection_id = str(uuid.uuid4())
    vectors = Vectors(sessions=database.sessions, engine=database.engine, embedder=openai_embedder(openai_fake))
    await Indexer(sessions=database.sessions, vectors=vectors).index_version(
        upserted(tenant_id, collection_id, [f"{TEXTS[0]} ({tenant_id})"])
    )
    searcher = Searcher(sessions=database.sessions, vectors=vectors)
    caller = Identity(tenant_id=tenant_id, user_id="ann", request_id="r-1", api_key_id="key-1")

    await searcher.search(
        tenant_id=tenant_id,
        query=search_query(text=f"warp of {tenant_id}", collection_ids=[collection_id], k=3, mode=Mode.VECTOR),
        billed_to=caller,
    )
    await searcher.embed(
        tenant_id=tenant_id, collection_ids=[collection_id], texts=[f"texts of {tenant_id}"], billed_to=caller
    )

    events = await billed(database, tenant_id)
    # The indexing pipeline's own call is the tenant's alone; the caller's two are theirs.
    assert [(event.user_id, event.api_key_id, event.request_id) for event in events] == [
        ("", "", ""),
        ("ann", "key-1", "r-1"),
        ("ann", "key-1", "r-1"),
    ]
    await vectors.close()


async def test_a_local_model_embeds_a_query_asked_again_once_and_keeps_it_out_of_the_shared_cache(
    database: Database, tenant_id: str
) -> None:
    collection_id = str(uuid.uuid4())
    vectors = Vectors(sessions=database.sessions, engine=database.engine, embedder=LocalEmbedder())
    # Texts of this test alone: the shared cache may hold the others' vectors.
    await Indexer(sessions=database.sessions, vectors=vectors).index_version(
        upserted(tenant_id, collection_id, [f"{body} ({tenant_id})" for body in TEXTS[:2]])
    )
    searcher = Searcher(sessions=database.sessions, vectors=vectors)
    query = f"engines of {tenant_id}"
    first = await vector_hits(searcher, tenant_id, collection_id, query)
    assert await vector_hits(searcher, tenant_id, collection_id, query) == first
    await vectors.close()  # a free call is billed after its search answered; close waits for it
    # The indexing call and the query's one call are billed; the repeat reached no model.
    assert [event.usage.input_tokens > 0 for event in await billed(database, tenant_id)] == [True, True]
    async with database.sessions() as session:
        cached = await store.cached_embeddings(
            session=session, model=vectors.embedder.name, content_hashes=[embedding_key(query)]
        )
    assert cached == {}


async def test_a_hybrid_search_answers_by_keyword_when_the_embeddings_provider_is_down(
    database: Database, openai_fake: FakeOpenAI, tenant_id: str
) -> None:
    collection_id = str(uuid.uuid4())
    vectors = Vectors(
        sessions=database.sessions, engine=database.engine, embedder=openai_embedder(openai_fake, max_retries=0)
    )
    await Indexer(sessions=database.sessions, vectors=vectors).index_version(upserted(tenant_id, collection_id, TEXTS))
    searcher = Searcher(sessions=database.sessions, vectors=vectors)

    def ask(mode: Mode) -> SearchQuery:
        return search_query(text="antimatter reactor power", collection_ids=[collection_id], k=3, mode=mode)

    openai_fake.script(Script.reject(503), Script.reject(503))  # down for the next two calls

    found = await searcher.search(tenant_id=tenant_id, query=ask(Mode.HYBRID))

    assert found.degraded == ("vector",)
    assert [hit.text for hit in found.hits] == [TEXTS[0]]  # the keyword leg's one match
    assert "<mark>antimatter</mark>" in found.hits[0].highlight
    # A vector search has nothing to fall back on: it says the provider is unavailable.
    with pytest.raises(Unavailable):
        await searcher.search(tenant_id=tenant_id, query=ask(Mode.VECTOR))

    # Back up: the next search is whole again.
    assert (await searcher.search(tenant_id=tenant_id, query=ask(Mode.HYBRID))).degraded == ()
    await vectors.close()


class WatchedEmbedder(LocalEmbedder):
    """The hashing embedder, noting how many database connections are checked out while it works."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        self._engine = engine
        self.connections_held: list[int] = []

    async def embed(self, texts: Sequence[str]) -> Embedded:
        self.connections_held.append(self._engine.pool.checkedout())  # type: ignore[attr-defined]
        return await super().embed(texts)


async def test_no_connection_is_held_while_a_model_embeds_a_document(database: Database, tenant_id: str) -> None:
    embedder = WatchedEmbedder(database.engine)
    vectors = Vectors(sessions=database.sessions, engine=database.engine, embedder=embedder)
    collection_id = str(uuid.uuid4())
    indexed = await Indexer(sessions=database.sessions, vectors=vectors).index_version(
        upserted(tenant_id, collection_id, [f"{body} ({tenant_id})" for body in TEXTS])
    )
    assert indexed
    # A remote model may take seconds: the document's lock and a pooled connection wait for nobody.
    assert embedder.connections_held == [0]
    assert (
        len(await vector_hits(Searcher(sessions=database.sessions, vectors=vectors), tenant_id, collection_id, "warp"))
        == 4
    )


async def test_local_embeddings_are_billed_too_and_a_failed_call_counts_as_failed(
    database: Database, openai_fake: FakeOpenAI, tenant_id: str
) -> None:
    local = Vectors(sessions=database.sessions, engine=database.engine, embedder=LocalEmbedder())
    await local.embed(tenant_id=tenant_id, embedder=local.embedder, contents=["three short words"])
    failing = openai_embedder(openai_fake, max_retries=1)
    openai_fake.script(Script.reject(500, retry_after=0.01), Script.reject(503, retry_after=0.01))
    with pytest.raises(Unavailable, match="503"):
        await local.embed(tenant_id=tenant_id, embedder=failing, contents=[f"unseen {tenant_id}"])

    events = await billed(database, tenant_id)
    assert [(event.provider, event.model, event.usage.input_tokens, event.success) for event in events] == [
        ("local", LocalEmbedder().model, 3, True),
        ("openai", OPENAI_MODEL, 0, False),
    ]


async def test_each_model_gets_its_own_hnsw_index_and_searches_use_it(database: Database, tenant_id: str) -> None:
    embedder = LocalEmbedder(dimensions=32)
    collection_id = str(uuid.uuid4())
    vectors = Vectors(sessions=database.sessions, engine=database.engine, embedder=embedder)
    # Enough chunks that reading them all costs more than walking the index.
    log = upserted(tenant_id, collection_id, [f"entry {number} of the captain's log" for number in range(2_000)])
    await Indexer(sessions=database.sessions, vectors=vectors).index_version(log)
    await vectors.ensure_indexes()
    await vectors.ensure_indexes()  # already there: nothing to do
    index = store.vector_index_name(embedder.name)

    async with database.sessions() as session:
        definition = await session.scalar(
            text("SELECT indexdef FROM pg_indexes WHERE schemaname = 'retrieval' AND indexname = :name"),
            {"name": index},
        )
    assert definition is not None
    assert "hnsw (((embedding)::vector(32)) vector_cosine_ops)" in definition
    assert f"WHERE (model = '{embedder.name}'::text)" in definition

    # The statement a search runs, as sent to PostgreSQL, is answered from the index.
    sent: list[tuple[str, object]] = []

    def capture(conn: object, cursor: object, statement: str, parameters: object, *args: object) -> None:
        if "chunk_embeddings" in statement:
            sent.append((statement, parameters))

    scope = SearchScope(tenant_id=tenant_id, collection_ids=[collection_id], limit=10)
    query = (await embedder.embed(["captain's log"])).vectors[0]
    event.listen(database.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with database.sessions() as session, session.begin():
            hits = await store.vector_search(
                session=session, scope=scope, embedding=query, model=embedder.name, dimensions=32, ef_search=100
            )
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", capture)
    assert len(hits) == 10
    [(statement, parameters)] = sent
    async with database.engine.connect() as connection, connection.begin():
        await connection.exec_driver_sql("ANALYZE retrieval.chunks, retrieval.chunk_embeddings")
        plan = (await connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)).scalars().all()
    assert any(index in line for line in plan), "\n".join(plan)


async def test_openai_embedder_batches_within_the_api_limits_and_retries(openai_fake: FakeOpenAI) -> None:
    embedder = openai_embedder(openai_fake, dimensions=16, max_request_tokens=12, max_retries=2)
    assert embedder.name == f"openai/{OPENAI_MODEL}@16"
    texts = ["alpha beta gamma", "", "delta epsilon zeta", "eta theta iota", "kappa lambda mu"]
    openai_fake.script(Script.reject(429, retry_after=0.01))

    embedded = await embedder.embed(texts)

    assert embedded.vectors[1] == [0.0] * 16  # a text with no words is never sent
    assert [vector for index, vector in enumerate(embedded.vectors) if index != 1] == [
        fake_embedding(body, 16) for body in texts if body
    ]
    for vector in embedded.vectors:
        assert len(vector) == 16
    assert embedded.input_tokens == sum(count(body) for body in texts)
    sent = [received.body for received in openai_fake.received]
    assert sent[0]["input"] == sent[1]["input"]  # refused with a 429, then sent again
    batches = [body["input"] for body in sent[1:]]
    assert len(batches) > 1
    assert all(sum(map(count, batch)) <= 12 for batch in batches)
    assert [body for batch in batches for body in batch] == [body for body in texts if body]
    assert {(body["model"], body["dimensions"], body["encoding_format"]) for body in sent} == {
        (OPENAI_MODEL, 16, "float")
    }
    await embedder.close()


async def test_openai_embedder_sends_at_most_2048_inputs_a_request(openai_fake: FakeOpenAI) -> None:
    embedder = openai_embedder(openai_fake, dimensions=4)
    texts = [f"word{index}" for index in range(2050)]
    embedded = await embedder.embed(texts)
    assert [len(received.body["input"]) for received in openai_fake.received] == [2048, 2]
    assert embedded.vectors[2049] == fake_embedding("word2049", 4)
    assert all(math.isclose(sum(value * value for value in vector), 1.0) for vector in embedded.vectors)
    await embedder.close()


def test_the_configured_embedder_and_those_named_by_stored_vectors() -> None:
    base = {"database_url": "postgresql://x/y", "nats_url": "nats://x", "env": "test"}
    openai = Settings(**base, embedding_provider="openai", embedding_dimensions=256, openai_api_key="sk-test")
    assert build_embedder(openai).name == f"openai/{OPENAI_MODEL}@256"
    assert isinstance(embedder_named("openai/text-embedding-3-large@1024", openai), OpenAiEmbedder)
    assert embedder_named("openai/text-embedding-3-large@1024", Settings(**base)) is None
    assert isinstance(embedder_named(MiniLmEmbedder.name, openai), MiniLmEmbedder)
    local = embedder_named("local-hash-128-v1", openai)
    assert local is not None and local.dimensions == 128
    assert embedder_named("someone-elses-model", openai) is None
    with pytest.raises(ValueError, match="PARLEY_OPENAI_API_KEY"):
        Settings(**base, embedding_provider="openai")


async def test_the_embedding_cache_is_read_for_more_than_65535_chunks_at_once(database: Database) -> None:
    # PostgreSQL takes at most 65,535 parameters a statement: a document of more chunks (a 1 MB
    # Markdown of tiny sections) failed here five times and was parked. (Indexing such a document
    # whole was checked once, ~50 s on a laptop: too slow for the suite; this was its only statement
    # over the limit.)
    hashes = [f"{number:064x}" for number in range(66_000)]
    async with database.sessions() as session:
        assert await store.cached_embeddings(session=session, model="never-used", content_hashes=hashes) == {}


async def test_an_upsert_retrieval_gives_up_on_tells_ingestion_why(database: Database, tenant_id: str) -> None:
    vectors = Vectors(sessions=database.sessions, engine=database.engine, embedder=LocalEmbedder())
    await vectors.start()
    indexer = Indexer(sessions=database.sessions, vectors=vectors)
    relay = OutboxRelay(sessions=database.sessions, table=models.outbox, js=None)  # type: ignore[arg-type]
    [upserts, _] = events.consumers(indexer=indexer, relay=relay)
    event = upserted(tenant_id, str(uuid.uuid4()), ["a chunk"])
    assert upserts.on_parked is not None

    # What the bus does once the upsert's last delivery failed and it was parked.
    await upserts.on_parked(Msg(_client=None, subject=CHUNKS_UPSERTED, data=event.SerializeToString()), "boom")  # type: ignore[arg-type]

    async with database.sessions() as session:
        rows = await session.execute(
            select(models.outbox.c.msg_id, models.outbox.c.payload).where(models.outbox.c.subject == CHUNKS_INDEXED)
        )
        told = {row.msg_id: events_pb2.ChunksIndexed.FromString(row.payload) for row in rows}
    said = told[index_failed_msg_id(event.document_id, 1)]
    assert (said.tenant_id, said.document_id, said.version, said.error) == (tenant_id, event.document_id, 1, "boom")
