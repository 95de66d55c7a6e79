"""BM25 keyword ranking on real PostgreSQL, from its postings there and from the copy in memory
(keyword_index.py), and the MiniLM embedder on its installed model files."""

import asyncio
import math
import random
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.retrieval
from parley.kit import db
from parley.kit.db import Sessions
from parley.retrieval import keyword_index, store
from parley.retrieval.bm25 import BM25_DEFAULTS, Bm25Parameters
from parley.retrieval.embeddings import Embedder, LocalEmbedder
from parley.retrieval.hybrid_search import Searcher
from parley.retrieval.keyword_index import KeywordIndex
from parley.retrieval.minilm import MiniLmEmbedder
from parley.retrieval.models import bm25_collections
from parley.retrieval.store import ChunkFilters, SearchScope, StoredChunk
from parley.retrieval.vectors import Vectors

K1, B = BM25_DEFAULTS.k1, BM25_DEFAULTS.b


@pytest_asyncio.fixture(scope="module")
async def sessions(engine: AsyncEngine) -> Sessions:
    await db.migrate(engine, schema="retrieval", migrations=Path(parley.retrieval.__file__).parent / "migrations")
    return db.session_factory(engine)


@dataclass(frozen=True)
class Keyword:
    """How a test's keyword leg runs: BM25's parameters, and whether from the postings in memory."""

    bm25: Bm25Parameters = BM25_DEFAULTS
    in_memory: bool = False


@pytest.fixture(params=[False, True], ids=["postgres", "in-memory"])
def index(request: pytest.FixtureRequest) -> Keyword:
    return Keyword(in_memory=request.param)


async def put(
    sessions: Sessions,
    index: Keyword,
    tenant_id: str,
    document_id: str,
    chunks: dict[str, str],
    *,
    collection: str = "c",
) -> None:
    """The chunks and their postings, written as the Indexer writes them."""
    async with sessions() as session, session.begin():
        await store.replace_document_chunks(
            session=session,
            tenant_id=tenant_id,
            collection_id=collection,
            document_id=document_id,
            version=1,
            document_title=document_id,
            new_chunks=[
                store.NewChunk(
                    chunk_id=f"{tenant_id}:{chunk_id}",
                    ordinal=ordinal,
                    heading="",
                    text=body,
                    token_count=len(body.split()),
                    content_hash="",
                    scene_number="",
                    characters=(),
                    page_start=0,
                    page_end=0,
                )
                for ordinal, (chunk_id, body) in enumerate(chunks.items())
            ],
        )
        await store.replace_postings(
            session=session,
            tenant_id=tenant_id,
            collection_id=collection,
            document_id=document_id,
            texts={f"{tenant_id}:{chunk_id}": body for chunk_id, body in chunks.items()},
            bm25=index.bm25,
        )


async def search(
    sessions: Sessions,
    index: Keyword,
    tenant_id: str,
    query: str,
    *,
    collections: tuple[str, ...] = ("c",),
    document_ids: tuple[str, ...] = (),
    limit: int = 10,
) -> dict[str, float]:
    """Chunk id (without the tenant prefix) → BM25 score, best first."""
    scope = SearchScope(
        tenant_id=tenant_id, collection_ids=collections, limit=limit, filters=ChunkFilters(document_ids=document_ids)
    )
    async with sessions() as session, session.begin():
        await store.enter_tenant(session=session, tenant_id=tenant_id)
        if index.in_memory:
            in_memory = KeywordIndex(sessions=sessions, max_postings=1_000_000, load_inline_chunks=1_000_000)
            from_memory = await in_memory.search(session=session, scope=scope, text=query, bm25=index.bm25)
            assert from_memory is not None, "the copy in memory did not answer"
            hits: list[StoredChunk] = from_memory
        else:
            # The keyword leg alone (no copy in memory): the vectors are never asked for.
            vectors = Vectors(sessions=sessions, engine=session.bind, embedder=LocalEmbedder())
            searcher = Searcher(sessions=sessions, vectors=vectors, bm25=index.bm25)
            hits = await searcher.keyword_leg(session=session, scope=scope, text=query)
    return {hit.chunk_id.removeprefix(f"{tenant_id}:"): hit.score for hit in hits}


async def test_the_analyzer_stems_and_drops_stop_words(sessions: Sessions) -> None:
    async with sessions() as session:
        terms = await store.analyse(session=session, content="The engines were running; an engine runs.")
    assert terms == {"engin": 2, "run": 2}


def bm25(tf: int, df: int, n: int, length: int, avgdl: float) -> float:
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / avgdl))


async def test_scores_are_bm25_computed_by_hand(sessions: Sessions, index: Keyword, tenant_id: str) -> None:
    # Terms after analysis: a = {warp: 2, engin: 1}, b = {warp: 1, core: 1, breach: 1}, c = {bread: 1}.
    await put(sessions, index, tenant_id, "d1", {"a": "warp warp engine", "b": "warp core breach"})
    await put(sessions, index, tenant_id, "d2", {"c": "bread"})
    n, avgdl = 3, (3 + 3 + 1) / 3
    scores = await search(sessions, index, tenant_id, "warp engines")
    assert scores == pytest.approx(
        {
            "a": bm25(2, 2, n, 3, avgdl) + bm25(1, 1, n, 3, avgdl),
            "b": bm25(1, 2, n, 3, avgdl),
        }
    )


async def test_any_word_of_the_query_can_match(sessions: Sessions, index: Keyword, tenant_id: str) -> None:
    await put(sessions, index, tenant_id, "d", {"warp": "the warp drive", "bread": "fresh bread and butter"})
    assert set(await search(sessions, index, tenant_id, "warp bread spaceship")) == {"warp", "bread"}


async def test_rarer_words_weigh_more(sessions: Sessions, index: Keyword, tenant_id: str) -> None:
    # "ship" is in every chunk, "nebula" in one: a chunk with the rare word outranks one with the common word.
    await put(
        sessions,
        index,
        tenant_id,
        "d",
        {
            "common": "ship hull ship",
            "rare": "nebula hull dust",
            "other1": "ship crew",
            "other2": "ship cargo",
        },
    )
    ranked = list(await search(sessions, index, tenant_id, "ship nebula"))
    assert ranked[0] == "rare"


async def test_long_chunks_do_not_win_by_length(sessions: Sessions, index: Keyword, tenant_id: str) -> None:
    padding = " ".join(f"filler{number}" for number in range(60))
    await put(sessions, index, tenant_id, "d", {"short": "reactor shielding", "long": f"reactor shielding {padding}"})
    scores = await search(sessions, index, tenant_id, "reactor")
    assert scores["short"] > scores["long"]


async def test_candidates_are_scored_over_every_query_term(sessions: Sessions, tenant_id: str) -> None:
    # Two best postings a term (impacts all distinct): "ship" → shipshape, dual; "hull" → hulls,
    # both. "dual" and "both" are each read through one term only, yet their scores must count
    # the other term too, where they are not among its best.
    chunks = {
        "shipshape": "ship ship",
        "dual": "ship ship hull",
        "hulls": "hull hull",
        "both": "ship hull",
        "long": "ship hull cargo deck crew",
    }
    await put(sessions, Keyword(), tenant_id, "d", chunks)
    fast = Keyword(Bm25Parameters(candidates_per_term=2, candidates_per_result=1, rounds=1))
    exact = Keyword(Bm25Parameters(candidates_per_term=None))
    top_fast = await search(sessions, fast, tenant_id, "ship hull", limit=2)
    top_exact = await search(sessions, exact, tenant_id, "ship hull", limit=2)
    assert list(top_fast) == list(top_exact) == ["dual", "both"]
    assert top_fast == pytest.approx(top_exact)


async def test_the_fast_path_reads_deeper_until_no_unscored_chunk_could_win(sessions: Sessions, tenant_id: str) -> None:
    rng = random.Random(8)
    words = [f"w{number}" for number in range(40)]
    # Zipf-like: a few words are in most chunks, most in few, as in prose.
    weights = [1 / (rank + 1) for rank in range(len(words))]
    corpus = {f"c{number}": " ".join(rng.choices(words, weights, k=rng.randint(5, 30))) for number in range(300)}
    await put(sessions, Keyword(), tenant_id, "d", corpus)
    exact = Keyword(Bm25Parameters(candidates_per_term=None))
    # 50 of a term's up to 300 postings; read once, or deeper while the bound says it may matter.
    once = Keyword(Bm25Parameters(candidates_per_term=10, candidates_per_result=5, rounds=1))
    deeper = Keyword(Bm25Parameters(candidates_per_term=10, candidates_per_result=5, rounds=3))
    in_memory = Keyword(in_memory=True)
    many_common_words = "w1 w2 w3 w4 w5 w6"
    assert list(await search(sessions, once, tenant_id, many_common_words)) != list(
        await search(sessions, exact, tenant_id, many_common_words)
    )
    for query in ("w0 w1 w17", "w3 w25 w30 w39", many_common_words, "w38"):
        exact_scores = await search(sessions, exact, tenant_id, query)
        assert list(await search(sessions, deeper, tenant_id, query)) == list(exact_scores), query
        memory_scores = await search(sessions, in_memory, tenant_id, query)
        assert list(memory_scores) == list(exact_scores), query
        assert memory_scores == pytest.approx(exact_scores), query


async def test_a_search_narrowed_to_documents_keeps_the_corpus_idf(
    sessions: Sessions, index: Keyword, tenant_id: str
) -> None:
    await put(sessions, index, tenant_id, "d1", {"a": "warp"})
    await put(sessions, index, tenant_id, "d2", {"b": "warp", "c": "bread"})
    narrowed = await search(sessions, index, tenant_id, "warp", document_ids=("d2",))
    assert narrowed == pytest.approx({"b": bm25(1, 2, 3, 1, 1.0)})


async def test_reindexing_and_deleting_keep_the_statistics_exact(
    sessions: Sessions, index: Keyword, tenant_id: str
) -> None:
    await put(sessions, index, tenant_id, "d1", {"a": "warp core"})
    await put(sessions, index, tenant_id, "d2", {"b": "warp field", "c": "dilithium"})
    await put(sessions, index, tenant_id, "d2", {"b2": "warp field"})  # a new version of d2
    async with sessions() as session, session.begin():
        await store.forget_document_postings(session=session, tenant_id=tenant_id, collection_id="c", document_id="d1")
    async with sessions() as session:
        stats = (
            await session.execute(
                select(bm25_collections.c.chunk_count, bm25_collections.c.total_length).where(
                    bm25_collections.c.tenant_id == tenant_id
                )
            )
        ).one()
    assert (stats.chunk_count, stats.total_length) == (1, 2)
    assert set(await search(sessions, index, tenant_id, "warp dilithium core")) == {"b2"}
    async with sessions() as session, session.begin():
        await store.forget_collection_postings(session=session, tenant_id=tenant_id, collection_id="c")
    assert await search(sessions, index, tenant_id, "warp") == {}


async def test_collections_searched_together_share_one_idf(sessions: Sessions, index: Keyword, tenant_id: str) -> None:
    await put(sessions, index, tenant_id, "d1", {"x": "warp", "y": "engine"}, collection="one")
    await put(sessions, index, tenant_id, "d2", {"z": "warp engine"}, collection="two")
    together = await search(sessions, index, tenant_id, "warp", collections=("one", "two"))
    n, avgdl = 3, 4 / 3
    assert together == pytest.approx({"x": bm25(1, 2, n, 1, avgdl), "z": bm25(1, 2, n, 2, avgdl)})
    # Another tenant with the same collection ids sees nothing of these.
    assert await search(sessions, index, str(uuid.uuid4()), "warp", collections=("one", "two")) == {}


# --- the copy in memory (keyword_index.py) ---------------------------------------------------


async def from_memory(
    sessions: Sessions, replica: KeywordIndex, tenant_id: str, query: str, *, limit: int = 10
) -> dict[str, float] | None:
    """What one replica's copy answers (chunk id → score, best first); None: it has no copy ready."""
    scope = SearchScope(tenant_id=tenant_id, collection_ids=("c",), limit=limit)
    async with sessions() as session, session.begin():
        await store.enter_tenant(session=session, tenant_id=tenant_id)
        hits = await replica.search(session=session, scope=scope, text=query, bm25=BM25_DEFAULTS)
    return None if hits is None else {hit.chunk_id.removeprefix(f"{tenant_id}:"): hit.score for hit in hits}


def prose(rng: random.Random, chunks: int) -> dict[str, str]:
    words = [f"w{number}" for number in range(40)]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    return {f"{rng.random():.8f}": " ".join(rng.choices(words, weights, k=rng.randint(3, 25))) for _ in range(chunks)}


QUERIES = ("w0 w1 w17", "w3 w25 w30 w39", "w1 w2 w3 w4 w5 w6", "w38")


async def assert_same_as_postgres(sessions: Sessions, replicas: list[KeywordIndex], tenant_id: str) -> None:
    exact = Keyword(Bm25Parameters(candidates_per_term=None))
    for query in QUERIES:
        expected = await search(sessions, exact, tenant_id, query)
        for replica in replicas:
            found = await from_memory(sessions, replica, tenant_id, query)
            assert found is not None
            assert list(found) == list(expected), query
            assert found == pytest.approx(expected), query


async def test_a_copy_in_memory_follows_every_change_on_every_replica(sessions: Sessions, tenant_id: str) -> None:
    rng = random.Random(3)
    replicas = [KeywordIndex(sessions=sessions, max_postings=1_000_000, load_inline_chunks=1_000) for _ in range(2)]
    first, second = prose(rng, 40), prose(rng, 40)
    await put(sessions, Keyword(), tenant_id, "d1", first)
    await put(sessions, Keyword(), tenant_id, "d2", second)
    await assert_same_as_postgres(sessions, replicas, tenant_id)
    # A new version of d2 (half its chunks kept), d1 deleted, d3 added: each seen at once.
    await put(sessions, Keyword(), tenant_id, "d2", dict(list(second.items())[:20]) | prose(rng, 10))
    await assert_same_as_postgres(sessions, replicas, tenant_id)
    async with sessions() as session, session.begin():
        await store.forget_document_postings(session=session, tenant_id=tenant_id, collection_id="c", document_id="d1")
    await put(sessions, Keyword(), tenant_id, "d3", {"only": "w39 w39 unique"})
    await assert_same_as_postgres(sessions, replicas, tenant_id)
    for replica in replicas:
        found = await from_memory(sessions, replica, tenant_id, "w0 w1 w2 unique", limit=200)
        assert found is not None and "only" in found and not set(found) & set(first)


async def test_a_large_collection_is_loaded_in_the_background_while_postgres_answers(
    sessions: Sessions, tenant_id: str
) -> None:
    await put(sessions, Keyword(), tenant_id, "d", prose(random.Random(4), 60))
    # Every collection counts as large here: none is loaded while a search waits.
    replica = KeywordIndex(sessions=sessions, max_postings=1_000_000, load_inline_chunks=0)
    assert await from_memory(sessions, replica, tenant_id, "w1") is None
    for _ in range(200):
        if await from_memory(sessions, replica, tenant_id, "w1") is not None:
            break
        await asyncio.sleep(0.05)
    await assert_same_as_postgres(sessions, [replica], tenant_id)
    await replica.close()


async def test_a_collection_larger_than_the_memory_budget_is_searched_in_postgres(
    sessions: Sessions, tenant_id: str
) -> None:
    await put(sessions, Keyword(), tenant_id, "d", prose(random.Random(5), 30))
    replica = KeywordIndex(sessions=sessions, max_postings=50, load_inline_chunks=1_000)
    assert await from_memory(sessions, replica, tenant_id, "w1") is None
    scope = SearchScope(tenant_id=tenant_id, collection_ids=("c",), limit=10)
    async with sessions() as session, session.begin():
        await store.enter_tenant(session=session, tenant_id=tenant_id)
        vectors = Vectors(sessions=sessions, engine=session.bind, embedder=LocalEmbedder())
        searcher = Searcher(sessions=sessions, vectors=vectors, keyword_index=replica)
        hits = await searcher.keyword_leg(session=session, scope=scope, text="w1 w2")
    exact = await search(sessions, Keyword(Bm25Parameters(candidates_per_term=None)), tenant_id, "w1 w2")
    assert [hit.chunk_id.removeprefix(f"{tenant_id}:") for hit in hits] == list(exact)


async def test_a_copy_worn_by_changes_is_loaded_again_and_stays_exact(
    sessions: Sessions, tenant_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword_index, "RELOAD_MIN_POSTINGS", 0)
    rng = random.Random(6)
    replica = KeywordIndex(sessions=sessions, max_postings=1_000_000, load_inline_chunks=1_000)
    await put(sessions, Keyword(), tenant_id, "d", prose(rng, 20))
    await assert_same_as_postgres(sessions, [replica], tenant_id)
    for _ in range(5):
        # Each version replaces every chunk: most slots die, and the copy is loaded again.
        await put(sessions, Keyword(), tenant_id, "d", prose(rng, 20))
        await assert_same_as_postgres(sessions, [replica], tenant_id)
    await replica.close()
    await assert_same_as_postgres(sessions, [replica], tenant_id)


# --- MiniLM -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    # Typed as the Protocol: mypy over this file checks that MiniLmEmbedder satisfies it.
    return MiniLmEmbedder()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the embedder tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


def dot(left: list[float], right: list[float]) -> float:
    return sum(a * b for a, b in zip(left, right, strict=True))


async def test_minilm_vectors_are_384_wide_and_unit_length(embedder: Embedder, offline: None) -> None:
    vectors = (await embedder.embed(["Warp engines need dilithium.", "", "x" * 5_000])).vectors
    assert [len(vector) for vector in vectors] == [384, 384, 384]
    for vector in vectors:
        assert math.sqrt(dot(vector, vector)) == pytest.approx(1.0, abs=1e-5)


async def test_similar_sentences_are_closer_than_unrelated_ones(embedder: Embedder, offline: None) -> None:
    cat, kitten, wing = (
        await embedder.embed(
            ["The cat sits on the mat.", "A kitten is resting on a rug.", "Supersonic flow over a swept wing."]
        )
    ).vectors
    # No word in common between the first two: only a semantic model puts them together.
    assert dot(cat, kitten) > 0.4
    assert dot(cat, kitten) > dot(cat, wing) + 0.3


async def test_a_text_gets_the_same_vector_alone_or_in_a_batch(embedder: Embedder) -> None:
    texts = ["short", "a somewhat longer sentence about engines and warp fields", "mid length text"]
    alone = [(await embedder.embed([body])).vectors[0] for body in texts]
    together = (await MiniLmEmbedder(batch_size=8).embed(texts)).vectors
    for one, other in zip(alone, together, strict=True):
        assert dot(one, other) == pytest.approx(1.0, abs=1e-4)
