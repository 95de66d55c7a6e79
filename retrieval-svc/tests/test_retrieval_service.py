"""Retrieval against real PostgreSQL (pgvector), real JetStream and a real gRPC server: chunk events
published on the DOCS stream become searchable, are announced once, and stay within their tenant."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from google.protobuf.message import Message
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.retrieval
from parley.kit import bus, db
from parley.kit.contracts import CHUNKS_DELETED, CHUNKS_INDEXED, CHUNKS_UPSERTED, indexed_msg_id
from parley.kit.db import Sessions
from parley.kit.identity import Identity
from parley.kit.outbox import OutboxRelay
from parley.kit.testing import Infra, serving, signed
from parley.retrieval import events, models, store
from parley.retrieval.embeddings import Embedded, LocalEmbedder
from parley.retrieval.grpc_api import RetrievalApi
from parley.retrieval.hybrid_search import Searcher
from parley.retrieval.indexing import Indexer
from parley.retrieval.vectors import Vectors
from parley.v1 import events_pb2, retrieval_pb2, retrieval_pb2_grpc

WITHIN_SECONDS = 30.0

ENGINE_TEXT = "The warp engines draw power from the antimatter reactor and push the ship beyond light speed."
BREAD_TEXT = "Knead the dough with flour, water, yeast and salt, then let it rise before baking the bread."
GARDEN_TEXT = "Tomatoes in the garden need sun, regular watering and a stake to climb as they grow."


@dataclass(frozen=True, slots=True)
class Doc:
    tenant_id: str
    collection_id: str
    document_id: str

    def chunk_id(self, version: int, ordinal: int) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.document_id}:{version}:{ordinal}"))

    def upserted(
        self, version: int, texts: Sequence[str], *, title: str = "Ship's manual"
    ) -> events_pb2.ChunksUpserted:
        return events_pb2.ChunksUpserted(
            tenant_id=self.tenant_id,
            collection_id=self.collection_id,
            document_id=self.document_id,
            version=version,
            document_title=title,
            chunks=[
                events_pb2.ChunkRecord(
                    chunk_id=self.chunk_id(version, ordinal),
                    ordinal=ordinal,
                    heading=f"Section {ordinal + 1}",
                    text=text,
                    token_count=len(text.split()),
                    content_hash=f"hash-{ordinal}-{len(text)}",
                )
                for ordinal, text in enumerate(texts)
            ],
        )


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The two consumers and the relay, running under durable names of this test module."""

    js: JetStreamContext
    upserted_durable: str
    deleted_durable: str

    async def upsert(self, event: events_pb2.ChunksUpserted, *, delivery: str = "1") -> None:
        await self._publish(CHUNKS_UPSERTED, event, self.upserted_durable, f"test-upserted:{delivery}")

    async def delete(self, event: events_pb2.ChunksDeleted) -> None:
        await self._publish(CHUNKS_DELETED, event, self.deleted_durable, "test-deleted")

    async def _publish(self, subject: str, event: Message, durable: str, msg_id: str) -> None:
        # A fresh Nats-Msg-Id each time: a second delivery must reach the consumer, not be deduplicated.
        ack = await self.js.publish(
            subject, event.SerializeToString(), headers={"Nats-Msg-Id": f"{msg_id}:{uuid.uuid4()}"}
        )

        async def handled() -> bool:
            try:
                info = await self.js.consumer_info(events.STREAM, durable)
            except NotFoundError:  # the consumer task has not created its durable yet
                return False
            return info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= ack.seq

        await eventually(handled)


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = WITHIN_SECONDS) -> None:
    """Wait for a condition that asynchronous work will make true; fail if it never does."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {within:.0f}s")
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture(scope="module")
async def sessions(engine: AsyncEngine) -> Sessions:
    await db.migrate(engine, schema="retrieval", migrations=Path(parley.retrieval.__file__).parent / "migrations")
    return db.session_factory(engine)


@pytest.fixture(scope="module")
def vectors(sessions: Sessions, engine: AsyncEngine) -> Vectors:
    return Vectors(sessions=sessions, engine=engine, embedder=LocalEmbedder())


@pytest_asyncio.fixture(scope="module")
async def pipeline(sessions: Sessions, vectors: Vectors, infra: Infra) -> AsyncIterator[Pipeline]:
    # A connection of its own, closed rather than drained: bus.run_consumer leaves its pull
    # subscription open when it stops, and draining a connection that holds one waits out the
    # 30 s drain timeout.
    nc = await bus.connect(infra.nats_url, name="retrieval-tests")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    stop = asyncio.Event()
    relay = OutboxRelay(sessions=sessions, table=models.outbox, js=js)
    suffix = uuid.uuid4().hex[:8]
    consumers = events.consumers(
        indexer=Indexer(sessions=sessions, vectors=vectors),
        relay=relay,
        upserted_durable=f"test-retrieval-upserted-{suffix}",
        deleted_durable=f"test-retrieval-deleted-{suffix}",
    )
    tasks = [asyncio.create_task(relay.run(stop))]
    tasks += [asyncio.create_task(bus.run_consumer(js, consumer, stop)) for consumer in consumers]
    try:
        yield Pipeline(js=js, upserted_durable=consumers[0].durable, deleted_durable=consumers[1].durable)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for consumer in consumers:
            await js.delete_consumer(events.STREAM, consumer.durable)
        await nc.close()


@pytest_asyncio.fixture(scope="module")
async def stub(sessions: Sessions, vectors: Vectors) -> AsyncIterator[retrieval_pb2_grpc.RetrievalServiceStub]:
    api = RetrievalApi(Searcher(sessions=sessions, vectors=vectors))
    async with serving(
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server, api, "parley.v1.RetrievalService"
    ) as channel:
        yield retrieval_pb2_grpc.RetrievalServiceStub(channel)


@pytest.fixture
def doc(tenant_id: str) -> Doc:
    return Doc(tenant_id=tenant_id, collection_id=str(uuid.uuid4()), document_id=str(uuid.uuid4()))


def as_(tenant_id: str) -> tuple[tuple[str, str], ...]:
    return signed(Identity(tenant_id=tenant_id, user_id=str(uuid.uuid4()), request_id=str(uuid.uuid4())))


async def search(
    stub: retrieval_pb2_grpc.RetrievalServiceStub,
    doc: Doc,
    query: str,
    mode: int = retrieval_pb2.SEARCH_MODE_HYBRID,
    *,
    tenant_id: str | None = None,
    k: int = 0,
    document_ids: Sequence[str] = (),
    heading: str = "",
) -> list[retrieval_pb2.ChunkHit]:
    response = await stub.Search(
        retrieval_pb2.SearchRequest(
            query=query,
            collection_ids=[doc.collection_id],
            k=k,
            mode=mode,
            filters=retrieval_pb2.SearchFilters(document_ids=document_ids, heading=heading),
        ),
        metadata=as_(tenant_id or doc.tenant_id),
        timeout=10,
    )
    return list(response.hits)


async def indexed_announcements(js: JetStreamContext, document_id: str) -> list[events_pb2.ChunksIndexed]:
    """Every ChunksIndexed for the document that the DOCS stream holds."""
    subscription = await js.subscribe(CHUNKS_INDEXED, ordered_consumer=True)
    found: list[events_pb2.ChunksIndexed] = []
    try:
        while True:
            message = await subscription.next_msg(timeout=10)
            event = events_pb2.ChunksIndexed.FromString(message.data)
            if event.document_id == document_id:
                found.append(event)
            if message.metadata.num_pending == 0:
                return found
    finally:
        await subscription.unsubscribe()


async def outbox_holds(sessions: Sessions, msg_id: str) -> int:
    async with sessions() as session:
        query = select(func.count()).select_from(models.outbox).where(models.outbox.c.msg_id == msg_id)
        return (await session.execute(query)).scalar_one()


async def test_indexed_chunks_are_found_by_keyword_vector_and_hybrid(
    pipeline: Pipeline, stub: retrieval_pb2_grpc.RetrievalServiceStub, doc: Doc
) -> None:
    await pipeline.upsert(doc.upserted(1, [ENGINE_TEXT, BREAD_TEXT, GARDEN_TEXT]))
    engine_chunk = doc.chunk_id(1, 0)

    keyword = await search(stub, doc, "antimatter reactor", retrieval_pb2.SEARCH_MODE_KEYWORD)
    assert [hit.chunk_id for hit in keyword] == [engine_chunk]

    vector = await search(stub, doc, "how do the ship's engines get their power?", retrieval_pb2.SEARCH_MODE_VECTOR)
    assert vector[0].chunk_id == engine_chunk
    assert len(vector) == 3
    assert vector[0].score > vector[1].score

    hybrid = await search(stub, doc, "warp engine power", retrieval_pb2.SEARCH_MODE_UNSPECIFIED)
    top = hybrid[0]
    assert top.chunk_id == engine_chunk
    assert (top.document_id, top.collection_id, top.document_title) == (
        doc.document_id,
        doc.collection_id,
        "Ship's manual",
    )
    assert (top.ordinal, top.heading, top.text, top.token_count) == (0, "Section 1", ENGINE_TEXT, 16)
    assert top.score > 0

    assert len(await search(stub, doc, "the", retrieval_pb2.SEARCH_MODE_VECTOR, k=2)) == 2


async def test_indexed_is_announced_once_even_when_the_upsert_arrives_twice(
    pipeline: Pipeline, sessions: Sessions, doc: Doc
) -> None:
    event = doc.upserted(3, [ENGINE_TEXT, BREAD_TEXT])
    await pipeline.upsert(event, delivery="first")
    await pipeline.upsert(event, delivery="second")

    async def relayed() -> bool:
        return await outbox_holds(sessions, indexed_msg_id(doc.document_id, 3)) == 0

    await eventually(relayed)

    announced = await indexed_announcements(pipeline.js, doc.document_id)
    assert [(item.tenant_id, item.version, item.chunk_count) for item in announced] == [(doc.tenant_id, 3, 2)]


async def test_another_tenant_sees_nothing(
    pipeline: Pipeline, stub: retrieval_pb2_grpc.RetrievalServiceStub, doc: Doc
) -> None:
    await pipeline.upsert(doc.upserted(1, [ENGINE_TEXT]))
    stranger = str(uuid.uuid4())
    assert await search(stub, doc, "warp engines") != []

    assert await search(stub, doc, "warp engines", tenant_id=stranger) == []
    chunks = await stub.GetChunks(
        retrieval_pb2.GetChunksRequest(chunk_ids=[doc.chunk_id(1, 0)]), metadata=as_(stranger), timeout=10
    )
    assert list(chunks.chunks) == []
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetNeighbors(
            retrieval_pb2.GetNeighborsRequest(document_id=doc.document_id, ordinal=0, after=1),
            metadata=as_(stranger),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_newer_version_replaces_an_older_one_and_a_late_older_one_changes_nothing(
    pipeline: Pipeline, stub: retrieval_pb2_grpc.RetrievalServiceStub, doc: Doc
) -> None:
    await pipeline.upsert(doc.upserted(1, [ENGINE_TEXT, BREAD_TEXT]))
    await pipeline.upsert(doc.upserted(2, [GARDEN_TEXT]))
    await pipeline.upsert(doc.upserted(1, [ENGINE_TEXT, BREAD_TEXT]), delivery="late")

    assert await search(stub, doc, "warp engines", retrieval_pb2.SEARCH_MODE_KEYWORD) == []
    hits = await search(stub, doc, "tomatoes garden")
    assert [(hit.chunk_id, hit.text) for hit in hits] == [(doc.chunk_id(2, 0), GARDEN_TEXT)]
    old = await stub.GetChunks(
        retrieval_pb2.GetChunksRequest(chunk_ids=[doc.chunk_id(1, 0), doc.chunk_id(2, 0)]),
        metadata=as_(doc.tenant_id),
        timeout=10,
    )
    assert [chunk.chunk_id for chunk in old.chunks] == [doc.chunk_id(2, 0)]


async def test_a_chunk_set_in_parts_is_searchable_once_every_part_has_come_in_any_order(
    pipeline: Pipeline, sessions: Sessions, stub: retrieval_pb2_grpc.RetrievalServiceStub, doc: Doc
) -> None:
    whole = doc.upserted(1, [ENGINE_TEXT, BREAD_TEXT, GARDEN_TEXT])

    def part(number: int, *ordinals: int) -> events_pb2.ChunksUpserted:
        piece = events_pb2.ChunksUpserted(part=number, parts=3)
        piece.MergeFrom(whole)
        del piece.chunks[:]
        piece.chunks.extend(whole.chunks[ordinal] for ordinal in ordinals)
        return piece

    await pipeline.upsert(part(3, 2))
    await pipeline.upsert(part(1, 0))
    await pipeline.upsert(part(1, 0), delivery="again")  # redelivered: held once
    # Two of three parts: nothing of the version is searchable yet.
    assert await search(stub, doc, "tomatoes garden", retrieval_pb2.SEARCH_MODE_KEYWORD) == []

    await pipeline.upsert(part(2, 1))

    hits = await search(stub, doc, "bread tomatoes warp", retrieval_pb2.SEARCH_MODE_KEYWORD)
    assert sorted(hit.ordinal for hit in hits) == [0, 1, 2]

    async def relayed() -> bool:
        return await outbox_holds(sessions, indexed_msg_id(doc.document_id, 1)) == 0

    await eventually(relayed)
    announced = await indexed_announcements(pipeline.js, doc.document_id)
    assert [(item.version, item.chunk_count) for item in announced] == [(1, 3)]
    async with sessions() as session:
        held = (
            select(func.count())
            .select_from(models.upsert_parts)
            .where(models.upsert_parts.c.document_id == doc.document_id)
        )
        assert (await session.execute(held)).scalar_one() == 0  # the parts are dropped once indexed


async def test_deleting_a_document_or_a_collection_removes_its_chunks(
    pipeline: Pipeline, stub: retrieval_pb2_grpc.RetrievalServiceStub, doc: Doc
) -> None:
    sibling = Doc(tenant_id=doc.tenant_id, collection_id=doc.collection_id, document_id=str(uuid.uuid4()))
    await pipeline.upsert(doc.upserted(1, [ENGINE_TEXT]))
    await pipeline.upsert(sibling.upserted(1, [ENGINE_TEXT], title="Copy"))
    assert len(await search(stub, doc, "warp engines")) == 2

    await pipeline.delete(
        events_pb2.ChunksDeleted(tenant_id=doc.tenant_id, collection_id=doc.collection_id, document_id=doc.document_id)
    )
    assert [hit.document_title for hit in await search(stub, doc, "warp engines")] == ["Copy"]

    # A redelivered upsert of the deleted document does not bring it back.
    await pipeline.upsert(doc.upserted(2, [ENGINE_TEXT]), delivery="after-delete")
    assert [hit.document_title for hit in await search(stub, doc, "warp engines")] == ["Copy"]

    await pipeline.delete(events_pb2.ChunksDeleted(tenant_id=doc.tenant_id, collection_id=doc.collection_id))
    assert await search(stub, doc, "warp engines") == []


async def test_deleting_forgets_the_keyword_statistics(pipeline: Pipeline, sessions: Sessions, doc: Doc) -> None:
    sibling = Doc(tenant_id=doc.tenant_id, collection_id=doc.collection_id, document_id=str(uuid.uuid4()))
    await pipeline.upsert(doc.upserted(1, [ENGINE_TEXT, BREAD_TEXT]))
    await pipeline.upsert(sibling.upserted(1, [GARDEN_TEXT]))

    async def bm25_chunk_count() -> int | None:
        async with sessions() as session:
            return (
                await session.execute(
                    select(models.bm25_collections.c.chunk_count).where(
                        models.bm25_collections.c.tenant_id == doc.tenant_id,
                        models.bm25_collections.c.collection_id == doc.collection_id,
                    )
                )
            ).scalar_one_or_none()

    assert await bm25_chunk_count() == 3
    await pipeline.delete(
        events_pb2.ChunksDeleted(tenant_id=doc.tenant_id, collection_id=doc.collection_id, document_id=doc.document_id)
    )
    # N (and so every IDF) no longer counts the deleted document's chunks.
    assert await bm25_chunk_count() == 1
    await pipeline.delete(events_pb2.ChunksDeleted(tenant_id=doc.tenant_id, collection_id=doc.collection_id))
    assert await bm25_chunk_count() is None


async def test_keyword_search_matches_any_word_and_marks_it_in_the_snippet(
    pipeline: Pipeline, stub: retrieval_pb2_grpc.RetrievalServiceStub, doc: Doc
) -> None:
    await pipeline.upsert(doc.upserted(1, [ENGINE_TEXT, BREAD_TEXT, GARDEN_TEXT, "Use <b>bold</b> & breads"]))
    hits = await search(stub, doc, "antimatter bread spaceship", retrieval_pb2.SEARCH_MODE_KEYWORD)
    # "antimatter" is in one chunk, "bread" (stemmed) in two: no chunk has every word, all three match.
    assert {hit.ordinal for hit in hits} == {0, 1, 3}
    snippets = {hit.ordinal: hit.highlight for hit in hits}
    assert "<mark>antimatter</mark>" in snippets[0]
    assert "<mark>bread</mark>" in snippets[1]
    # The document's own markup never reaches the snippet as HTML (PostgreSQL's parser drops tags,
    # the rest is escaped): only the marks are.
    assert "<b>" not in snippets[3]
    assert snippets[3].endswith("&amp; <mark>breads</mark>")


async def test_search_can_be_limited_to_headings(
    pipeline: Pipeline, stub: retrieval_pb2_grpc.RetrievalServiceStub, doc: Doc
) -> None:
    await pipeline.upsert(doc.upserted(1, [ENGINE_TEXT, f"{ENGINE_TEXT} Again.", GARDEN_TEXT]))
    for mode in (retrieval_pb2.SEARCH_MODE_KEYWORD, retrieval_pb2.SEARCH_MODE_VECTOR, retrieval_pb2.SEARCH_MODE_HYBRID):
        hits = await search(stub, doc, "warp engines", mode, heading="SECTION 2")
        assert [hit.heading for hit in hits] == ["Section 2"]


async def test_row_level_security_hides_other_tenants_rows_from_any_query(
    pipeline: Pipeline, sessions: Sessions, doc: Doc
) -> None:
    other = Doc(tenant_id=str(uuid.uuid4()), collection_id=doc.collection_id, document_id=str(uuid.uuid4()))
    await pipeline.upsert(doc.upserted(1, [ENGINE_TEXT, BREAD_TEXT]))
    await pipeline.upsert(other.upserted(1, [GARDEN_TEXT]))

    async def visible(tenant_id: str) -> dict[str, set[str]]:
        """What a query with no tenant filter at all sees, in a transaction given to the tenant."""
        async with sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            tenants = {
                name: set((await session.execute(select(table.c.tenant_id).distinct())).scalars())
                for name, table in (
                    ("chunks", models.chunks),
                    ("chunk_embeddings", models.chunk_embeddings),
                    ("bm25_collections", models.bm25_collections),
                )
            }
            postings = await session.execute(select(models.bm25_postings.c.document_id).distinct())
            changes = await session.execute(select(models.bm25_document_changes.c.document_id).distinct())
            return {**tenants, "postings of": set(postings.scalars()), "changes of": set(changes.scalars())}

    assert await visible(doc.tenant_id) == {
        "chunks": {doc.tenant_id},
        "chunk_embeddings": {doc.tenant_id},
        "bm25_collections": {doc.tenant_id},
        "postings of": {doc.document_id},
        "changes of": {doc.document_id},
    }
    assert await visible("") == {
        "chunks": set(),
        "chunk_embeddings": set(),
        "bm25_collections": set(),
        "postings of": set(),
        "changes of": set(),
    }

    # Nor can a transaction of one tenant write a row of another.
    with pytest.raises(DBAPIError, match="row-level security"):
        async with sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=doc.tenant_id)
            await store.delete_document(
                session=session, tenant_id=other.tenant_id, collection_id=other.collection_id, document_id="x"
            )


async def test_search_can_be_limited_to_some_documents(
    pipeline: Pipeline, stub: retrieval_pb2_grpc.RetrievalServiceStub, doc: Doc
) -> None:
    other = Doc(tenant_id=doc.tenant_id, collection_id=doc.collection_id, document_id=str(uuid.uuid4()))
    await pipeline.upsert(doc.upserted(1, [ENGINE_TEXT]))
    await pipeline.upsert(other.upserted(1, [ENGINE_TEXT], title="Other"))

    hits = await search(stub, doc, "warp engines", document_ids=[other.document_id])
    assert [hit.document_id for hit in hits] == [other.document_id]


async def test_neighbours_are_the_chunks_around_a_position(
    pipeline: Pipeline, stub: retrieval_pb2_grpc.RetrievalServiceStub, doc: Doc
) -> None:
    texts = [f"Scene {number}: the crew talks about chapter {number}." for number in range(30)]
    await pipeline.upsert(doc.upserted(1, texts))

    around = await stub.GetNeighbors(
        retrieval_pb2.GetNeighborsRequest(document_id=doc.document_id, ordinal=5, before=1, after=2),
        metadata=as_(doc.tenant_id),
        timeout=10,
    )
    assert [chunk.ordinal for chunk in around.chunks] == [4, 5, 6, 7]
    assert around.chunks[0].text == texts[4]

    capped = await stub.GetNeighbors(
        retrieval_pb2.GetNeighborsRequest(document_id=doc.document_id, ordinal=15, before=100, after=100),
        metadata=as_(doc.tenant_id),
        timeout=10,
    )
    assert [chunk.ordinal for chunk in capped.chunks] == list(range(5, 26))


async def test_get_chunks_returns_them_in_the_order_asked(
    pipeline: Pipeline, stub: retrieval_pb2_grpc.RetrievalServiceStub, doc: Doc
) -> None:
    await pipeline.upsert(doc.upserted(1, [ENGINE_TEXT, BREAD_TEXT, GARDEN_TEXT]))
    wanted = [doc.chunk_id(1, 2), "not-a-uuid", doc.chunk_id(1, 0)]
    response = await stub.GetChunks(
        retrieval_pb2.GetChunksRequest(chunk_ids=wanted), metadata=as_(doc.tenant_id), timeout=10
    )
    assert [chunk.text for chunk in response.chunks] == [GARDEN_TEXT, ENGINE_TEXT]


async def test_reindexing_unchanged_text_embeds_nothing(sessions: Sessions, engine: AsyncEngine, doc: Doc) -> None:
    embedder = CountingEmbedder()
    indexer = Indexer(sessions=sessions, vectors=Vectors(sessions=sessions, engine=engine, embedder=embedder))
    await indexer.index_version(doc.upserted(1, [f"{ENGINE_TEXT} {doc.document_id}"]))
    assert embedder.embedded == 1

    changed = doc.upserted(2, [f"{ENGINE_TEXT} {doc.document_id}", f"{BREAD_TEXT} {doc.document_id}"])
    assert await indexer.index_version(changed)
    assert embedder.embedded == 2

    # A redelivery changes nothing and announces nothing (NATS deduplication is not what saves us).
    assert not await indexer.index_version(changed)
    assert embedder.embedded == 2
    assert await outbox_holds(sessions, indexed_msg_id(doc.document_id, 2)) <= 1


class CountingEmbedder(LocalEmbedder):
    """The local embedder, counting the texts that actually reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded = 0

    async def embed(self, texts: Sequence[str]) -> Embedded:
        self.embedded += len(texts)
        return await super().embed(texts)


@pytest.mark.parametrize(
    "request_",
    [
        retrieval_pb2.SearchRequest(query="", collection_ids=["c"]),
        retrieval_pb2.SearchRequest(query="x" * 2_001, collection_ids=["c"]),
        retrieval_pb2.SearchRequest(query="engines"),
        retrieval_pb2.SearchRequest(query="engines", collection_ids=["c"], k=51),
        retrieval_pb2.SearchRequest(query="engines", collection_ids=["c"], k=-3),
    ],
)
async def test_invalid_searches_are_invalid_argument(
    stub: retrieval_pb2_grpc.RetrievalServiceStub, tenant_id: str, request_: retrieval_pb2.SearchRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Search(request_, metadata=as_(tenant_id), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_invalid_reads_are_invalid_argument(
    stub: retrieval_pb2_grpc.RetrievalServiceStub, tenant_id: str
) -> None:
    too_many = retrieval_pb2.GetChunksRequest(chunk_ids=[str(uuid.uuid4()) for _ in range(101)])
    negative = retrieval_pb2.GetNeighborsRequest(document_id=str(uuid.uuid4()), ordinal=3, before=-1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetChunks(too_many, metadata=as_(tenant_id), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetNeighbors(negative, metadata=as_(tenant_id), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_call_without_identity_is_refused(stub: retrieval_pb2_grpc.RetrievalServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Search(retrieval_pb2.SearchRequest(query="engines", collection_ids=["c"]), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


SCENES = (
    # scene number, who speaks, pages, text
    ("1", ["EDWARD", "ANNA"], (1, 2), "EDWARD and ANNA argue about the warp engines in the hangar."),
    ("2", ["EDWARD"], (2, 3), "EDWARD alone with the warp engines, talking to himself."),
    ("3A", ["ANNA", "MARA"], (5, 5), "ANNA shows MARA the warp engines from the gantry."),
    ("", [], (0, 0), "Title page: Warp Engines, a screenplay."),
)


def screenplay(doc: Doc) -> events_pb2.ChunksUpserted:
    return events_pb2.ChunksUpserted(
        tenant_id=doc.tenant_id,
        collection_id=doc.collection_id,
        document_id=doc.document_id,
        version=1,
        document_title="Warp",
        chunks=[
            events_pb2.ChunkRecord(
                chunk_id=doc.chunk_id(1, ordinal),
                ordinal=ordinal,
                heading=f"{number} INT. HANGAR - DAY" if number else "Title page",
                text=text,
                token_count=len(text.split()),
                scene_number=number,
                characters=characters,
                page_start=pages[0],
                page_end=pages[1],
            )
            for ordinal, (number, characters, pages, text) in enumerate(SCENES)
        ],
    )


async def test_search_can_be_limited_to_scenes_characters_and_pages(
    pipeline: Pipeline, stub: retrieval_pb2_grpc.RetrievalServiceStub, doc: Doc
) -> None:
    await pipeline.upsert(screenplay(doc))

    async def scenes(mode: int, **filters: object) -> set[str]:
        response = await stub.Search(
            retrieval_pb2.SearchRequest(
                query="warp engines",
                collection_ids=[doc.collection_id],
                k=10,
                mode=mode,
                filters=retrieval_pb2.SearchFilters(**filters),
            ),
            metadata=as_(doc.tenant_id),
            timeout=10,
        )
        return {hit.scene_number or "title" for hit in response.hits}

    for mode in (retrieval_pb2.SEARCH_MODE_KEYWORD, retrieval_pb2.SEARCH_MODE_VECTOR, retrieval_pb2.SEARCH_MODE_HYBRID):
        assert await scenes(mode) == {"1", "2", "3A", "title"}
        assert await scenes(mode, scene_numbers=["2", "3A"]) == {"2", "3A"}
        assert await scenes(mode, characters=["EDWARD"]) == {"1", "2"}
        # Every one of them speaks in the scene; names in any case.
        assert await scenes(mode, characters=["edward", "Anna"]) == {"1"}
        assert await scenes(mode, characters=["MARA", "EDWARD"]) == set()
        # Pages overlap the range; a chunk without pages is in none.
        assert await scenes(mode, page_from=3) == {"2", "3A"}
        assert await scenes(mode, page_to=2) == {"1", "2"}
        assert await scenes(mode, page_from=3, page_to=4) == {"2"}
        assert await scenes(mode, scene_numbers=["1", "2"], characters=["ANNA"], page_to=9) == {"1"}

    [hit] = await search(stub, doc, "gantry", retrieval_pb2.SEARCH_MODE_KEYWORD)
    assert (hit.scene_number, list(hit.characters), hit.page_start, hit.page_end) == ("3A", ["ANNA", "MARA"], 5, 5)
    chunks = await stub.GetChunks(
        retrieval_pb2.GetChunksRequest(chunk_ids=[doc.chunk_id(1, 0)]), metadata=as_(doc.tenant_id), timeout=10
    )
    assert list(chunks.chunks[0].characters) == ["EDWARD", "ANNA"]


async def test_a_page_range_ending_before_it_starts_is_invalid_argument(
    stub: retrieval_pb2_grpc.RetrievalServiceStub, doc: Doc
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Search(
            retrieval_pb2.SearchRequest(
                query="warp",
                collection_ids=[doc.collection_id],
                filters=retrieval_pb2.SearchFilters(page_from=4, page_to=3),
            ),
            metadata=as_(doc.tenant_id),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_documents_indexed_before_postings_get_them_at_start(
    pipeline: Pipeline, stub: retrieval_pb2_grpc.RetrievalServiceStub, sessions: Sessions, vectors: Vectors, doc: Doc
) -> None:
    await pipeline.upsert(doc.upserted(1, [ENGINE_TEXT, BREAD_TEXT]))
    # As a document indexed before migration 0002: chunks, but no postings.
    async with sessions() as session, session.begin():
        await store.enter_tenant(session=session, tenant_id=doc.tenant_id)
        await store.forget_document_postings(
            session=session, tenant_id=doc.tenant_id, collection_id=doc.collection_id, document_id=doc.document_id
        )
    assert await search(stub, doc, "antimatter", retrieval_pb2.SEARCH_MODE_KEYWORD) == []

    indexer = Indexer(sessions=sessions, vectors=vectors)
    await indexer.backfill_postings(asyncio.Event())
    hits = await search(stub, doc, "antimatter", retrieval_pb2.SEARCH_MODE_KEYWORD)
    assert [hit.chunk_id for hit in hits] == [doc.chunk_id(1, 0)]

    async def statistics() -> tuple[int, int]:
        async with sessions() as session:
            row = (
                await session.execute(
                    select(models.bm25_collections.c.chunk_count, models.bm25_collections.c.total_length).where(
                        models.bm25_collections.c.tenant_id == doc.tenant_id,
                        models.bm25_collections.c.collection_id == doc.collection_id,
                    )
                )
            ).one()
            return row.chunk_count, row.total_length

    counted = await statistics()
    assert counted[0] == 2
    # Again, as at the next start: nothing to do, nothing counted twice.
    await indexer.backfill_postings(asyncio.Event())
    assert await statistics() == counted
    assert [hit.chunk_id for hit in await search(stub, doc, "antimatter", retrieval_pb2.SEARCH_MODE_KEYWORD)] == [
        doc.chunk_id(1, 0)
    ]
