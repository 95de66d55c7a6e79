"""POST /v1/search over the public HTTP API: the gateway app in front of a real retrieval-svc and a
real ingestion-svc (their gRPC servers, their schemas on the real PostgreSQL). Chunks are put in
the index by retrieval's own Indexer, as its consumer does on `docs.chunks.upserted`."""

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.ingestion
import parley.retrieval
from parley.gateway import auth, store
from parley.ingestion.artifacts import Artifacts
from parley.ingestion.catalog import Collections
from parley.ingestion.config import Settings as IngestionSettings
from parley.ingestion.dead_letters import DeadLetters
from parley.ingestion.documents import Documents
from parley.ingestion.grpc_api import IngestionApi
from parley.ingestion.pipeline import Pipeline
from parley.ingestion.progress import Progress
from parley.kit import db
from parley.kit.rpc import GrpcServer
from parley.kit.testing import TEST_SIGNER, Infra
from parley.retrieval.embeddings import LocalEmbedder
from parley.retrieval.grpc_api import RetrievalApi
from parley.retrieval.hybrid_search import Searcher
from parley.retrieval.indexing import Indexer
from parley.retrieval.vectors import Vectors
from parley.v1 import events_pb2, ingestion_pb2_grpc, retrieval_pb2_grpc

ENGINE = "The warp engines draw power from the antimatter reactor and push the ship beyond light speed."
BREAD = "Knead the dough with flour, water, yeast and salt, then let it rise before baking the bread."
REACTOR = "Shut the antimatter reactor down before any work on the warp coils."


@dataclass(frozen=True, slots=True)
class Backends:
    ingestion_target: str
    retrieval_target: str
    indexer: Indexer


@pytest_asyncio.fixture(scope="module")
async def backends(engine: AsyncEngine, infra: Infra, nats_client: NatsClient) -> AsyncIterator[Backends]:
    await db.migrate(engine, schema="ingestion", migrations=Path(parley.ingestion.__file__).parent / "migrations")
    await db.migrate(engine, schema="retrieval", migrations=Path(parley.retrieval.__file__).parent / "migrations")
    sessions = db.session_factory(engine)
    settings = IngestionSettings(env="test", database_url=infra.database_url, nats_url=infra.nats_url)
    progress = Progress(sessions=sessions, js=nats_client.jetstream())
    # Search reads no artifacts: none are written.
    artifacts = Artifacts(
        sessions=sessions, progress=progress, settings=settings, writer=None, notify_outbox=lambda: None
    )
    pipeline = Pipeline(
        sessions=sessions, progress=progress, settings=settings, artifacts=artifacts, notify_outbox=lambda: None
    )
    ingestion = IngestionApi(
        collections=Collections(sessions=sessions, notify_outbox=lambda: None),
        documents=Documents(sessions=sessions, progress=progress, settings=settings, notify_outbox=lambda: None),
        progress=progress,
        # Search never parks a job; the servicer needs one all the same.
        dead_letters=DeadLetters(js=nats_client.jetstream(), pipeline=pipeline),
        artifacts=artifacts,
    )
    # The hashing embedder: instant. The real model runs in tests/test_end_to_end.py.
    vectors = Vectors(sessions=sessions, engine=engine, embedder=LocalEmbedder())
    server = GrpcServer(port=0, host="127.0.0.1", signer=TEST_SIGNER)
    server.add(ingestion_pb2_grpc.add_IngestionServiceServicer_to_server, ingestion, "parley.v1.IngestionService")
    server.add(
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server,
        RetrievalApi(Searcher(sessions=sessions, vectors=vectors)),
        "parley.v1.RetrievalService",
    )
    await server.start()
    try:
        target = f"127.0.0.1:{server.port}"
        yield Backends(target, target, Indexer(sessions=sessions, vectors=vectors))
    finally:
        await server.stop(0)


@pytest_asyncio.fixture(scope="module")
async def api(
    open_gateway: Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]], backends: Backends
) -> AsyncIterator[httpx.AsyncClient]:
    async with open_gateway(
        ingestion_target=backends.ingestion_target, retrieval_target=backends.retrieval_target
    ) as client:
        yield client


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    headers: dict[str, str]


async def new_tenant(sessions: db.Sessions, pepper: str) -> Tenant:
    key = "pk_" + uuid.uuid4().hex
    async with sessions.begin() as session:
        principal = await store.create_tenant_with_admin(
            session=session, tenant_name=f"t-{uuid.uuid4().hex[:8]}", key_hash=auth.hash_api_key(key, pepper=pepper)
        )
    return Tenant(principal.tenant_id, {"Authorization": f"Bearer {key}"})


@pytest_asyncio.fixture
async def tenant(sessions: db.Sessions, pepper: str) -> Tenant:
    return await new_tenant(sessions, pepper)


async def collection_with(
    api: httpx.AsyncClient, backends: Backends, tenant: Tenant, documents: dict[str, list[str]]
) -> tuple[str, dict[str, str]]:
    """A new collection of the tenant's holding the documents (title → chunk texts), indexed.
    Returns the collection id and each title's document id."""
    created = await api.post("/v1/collections", json={"name": "manuals"}, headers=tenant.headers)
    assert created.status_code == 201, created.text
    collection_id = created.json()["id"]
    ids = {}
    for title, texts in documents.items():
        document_id = str(uuid.uuid4())
        ids[title] = document_id
        await backends.indexer.index_version(
            events_pb2.ChunksUpserted(
                tenant_id=tenant.tenant_id,
                collection_id=collection_id,
                document_id=document_id,
                version=1,
                document_title=title,
                chunks=[
                    events_pb2.ChunkRecord(
                        chunk_id=str(uuid.uuid4()),
                        ordinal=ordinal,
                        heading=f"{title} part {ordinal + 1}",
                        text=text,
                        token_count=len(text.split()),
                    )
                    for ordinal, text in enumerate(texts)
                ],
            )
        )
    return collection_id, ids


async def test_search_finds_the_passage_and_marks_the_words_in_every_mode(
    api: httpx.AsyncClient, backends: Backends, tenant: Tenant
) -> None:
    collection_id, ids = await collection_with(api, backends, tenant, {"Engines": [ENGINE], "Baking": [BREAD]})
    for mode in ("hybrid", "vector", "keyword"):
        response = await api.post(
            "/v1/search",
            json={"query": "antimatter reactor", "collection_ids": [collection_id], "mode": mode, "k": 1},
            headers=tenant.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["degraded"] == []  # every leg ran
        [hit] = response.json()["data"]
        assert hit["document_id"] == ids["Engines"]
        assert hit["document_title"] == "Engines"
        assert hit["heading"] == "Engines part 1"
        assert hit["ordinal"] == 0
        assert hit["collection_id"] == collection_id
        assert hit["score"] > 0
        assert uuid.UUID(hit["chunk_id"])
        assert "<mark>antimatter</mark> <mark>reactor</mark>" in hit["snippet"]


async def test_search_is_narrowed_by_documents_and_heading(
    api: httpx.AsyncClient, backends: Backends, tenant: Tenant
) -> None:
    collection_id, ids = await collection_with(
        api, backends, tenant, {"Engines": [ENGINE, REACTOR], "Safety": [REACTOR]}
    )

    async def found(filters: dict[str, object]) -> list[tuple[str, str]]:
        body = {"query": "antimatter reactor", "collection_ids": [collection_id], "filters": filters}
        response = await api.post("/v1/search", json=body, headers=tenant.headers)
        assert response.status_code == 200, response.text
        return sorted((hit["document_title"], hit["heading"]) for hit in response.json()["data"])

    assert len(await found({})) == 3
    assert await found({"document_ids": [ids["Safety"]]}) == [("Safety", "Safety part 1")]
    assert await found({"heading": "engines PART 2"}) == [("Engines", "Engines part 2")]


async def test_search_is_narrowed_by_scenes_characters_and_pages(
    api: httpx.AsyncClient, backends: Backends, tenant: Tenant
) -> None:
    collection_id, _ = await collection_with(api, backends, tenant, {"Notes": [ENGINE]})
    document_id = str(uuid.uuid4())
    scenes = [
        ("1", ["EDWARD", "ANNA"], 1, 2, "EDWARD and ANNA argue about the antimatter reactor."),
        ("2", ["EDWARD"], 2, 3, "EDWARD checks the antimatter reactor alone."),
        ("3A", ["ANNA", "MARA"], 5, 5, "ANNA shows MARA the antimatter reactor."),
    ]
    await backends.indexer.index_version(
        events_pb2.ChunksUpserted(
            tenant_id=tenant.tenant_id,
            collection_id=collection_id,
            document_id=document_id,
            version=1,
            document_title="Reactor",
            chunks=[
                events_pb2.ChunkRecord(
                    chunk_id=str(uuid.uuid4()),
                    ordinal=ordinal,
                    heading=f"{number} INT. ENGINE ROOM - NIGHT",
                    text=text,
                    token_count=len(text.split()),
                    scene_number=number,
                    characters=characters,
                    page_start=first,
                    page_end=last,
                )
                for ordinal, (number, characters, first, last, text) in enumerate(scenes)
            ],
        )
    )

    async def found(filters: dict[str, object], mode: str = "hybrid") -> set[str]:
        body = {"query": "antimatter reactor", "collection_ids": [collection_id], "mode": mode, "filters": filters}
        response = await api.post("/v1/search", json=body, headers=tenant.headers)
        assert response.status_code == 200, response.text
        return {hit["scene_number"] or "not a scene" for hit in response.json()["data"]}

    for mode in ("hybrid", "keyword", "vector"):
        assert await found({}, mode) == {"1", "2", "3A", "not a scene"}
        assert await found({"scene_numbers": ["3A", "9"]}, mode) == {"3A"}
        assert await found({"characters": [" edward"]}, mode) == {"1", "2"}
        assert await found({"characters": ["Anna", "EDWARD"]}, mode) == {"1"}
        assert await found({"page_from": 3}, mode) == {"2", "3A"}
        assert await found({"page_from": 1, "page_to": 2}, mode) == {"1", "2"}

    response = await api.post(
        "/v1/search",
        json={"query": "MARA", "collection_ids": [collection_id], "mode": "keyword", "filters": {"page_to": 9}},
        headers=tenant.headers,
    )
    [hit] = response.json()["data"]
    assert (hit["scene_number"], hit["characters"], hit["page_start"], hit["page_end"]) == (
        "3A",
        ["ANNA", "MARA"],
        5,
        5,
    )
    response = await api.post(
        "/v1/search", json={"query": "warp engines", "collection_ids": [collection_id]}, headers=tenant.headers
    )
    outside_a_script = response.json()["data"][0]
    assert outside_a_script["document_title"] == "Notes"
    assert [outside_a_script[name] for name in ("scene_number", "characters", "page_start", "page_end")] == [None] * 4


async def test_a_page_range_out_of_order_is_refused_with_the_reason(api: httpx.AsyncClient, tenant: Tenant) -> None:
    body = {"query": "warp", "collection_ids": ["c"], "filters": {"page_from": 5, "page_to": 4}}
    response = await api.post("/v1/search", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == "filters"
    assert "page_from must not be after page_to" in detail["message"]


async def test_another_tenants_collection_is_not_found(
    api: httpx.AsyncClient, backends: Backends, tenant: Tenant, sessions: db.Sessions, pepper: str
) -> None:
    own, _ = await collection_with(api, backends, tenant, {"Engines": [ENGINE]})
    other = await new_tenant(sessions, pepper)
    theirs, _ = await collection_with(api, backends, other, {"Secret": [ENGINE]})
    for collection_ids in ([theirs], [own, theirs], [str(uuid.uuid4())]):
        response = await api.post(
            "/v1/search", json={"query": "warp engines", "collection_ids": collection_ids}, headers=tenant.headers
        )
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"query": "", "collection_ids": ["c"]},
        {"query": "   ", "collection_ids": ["c"]},
        {"query": "x" * 2_001, "collection_ids": ["c"]},
        {"query": "warp", "collection_ids": []},
        {"query": "warp", "collection_ids": [f"c{number}" for number in range(21)]},
        {"query": "warp", "collection_ids": ["c"], "k": 0},
        {"query": "warp", "collection_ids": ["c"], "k": 51},
        {"query": "warp", "collection_ids": ["c"], "mode": "fuzzy"},
        {"query": "warp", "collection_ids": ["c"], "filters": {"heading": "x" * 301}},
        {"query": "warp", "collection_ids": ["c"], "filters": {"page_from": 0}},
        {"query": "warp", "collection_ids": ["c"], "filters": {"page_to": -1}},
        {"query": "warp", "collection_ids": ["c"], "filters": {"page_from": "three"}},
        {"query": "warp", "collection_ids": ["c"], "filters": {"characters": [""]}},
        {"query": "warp", "collection_ids": ["c"], "filters": {"scene_numbers": "12"}},
        {"query": "warp", "collection_ids": ["c"], "limit": 3},
    ],
)
async def test_invalid_searches_are_422_in_the_error_shape(
    api: httpx.AsyncClient, tenant: Tenant, body: dict[str, object]
) -> None:
    response = await api.post("/v1/search", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["request_id"] == response.headers["X-Request-ID"]


async def test_search_needs_a_key(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/search", json={"query": "warp", "collection_ids": ["c"]})
    assert response.status_code == 401
