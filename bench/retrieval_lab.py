"""Retrieval quality and speed on a BEIR-layout data set, against a real embedded PostgreSQL.

    .venv/bin/python bench/retrieval_lab.py [FOLDER] [--scale 100000] [--fusion-grid] [--bm25-grid]

FOLDER holds corpus.jsonl, queries.jsonl and qrels/test.tsv (default: ../shared/data/cranfield).
Each document is indexed as one chunk into the retrieval schema (its migrations; chunks and BM25
postings written by parley.retrieval.store, as the Indexer writes them), and every query is run
in each mode: keyword (BM25 in PostgreSQL), keyword as
today (websearch_to_tsquery + ts_rank_cd), vector (MiniLM, exact and HNSW), hybrid (fusions of
the two), and in-process bm25s as the reference. Printed as Markdown tables for BENCHMARKS.md.

--bm25-grid adds a table over BM25's k1 and b: the exact keyword leg, bm25s and hybrid at each.

--scale N adds N synthetic chunks (halves of two abstracts joined, their vectors blended) to
time the modes at that size and measure HNSW recall@10 against exact search per ef_search.
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package, from any folder

import parley.retrieval
from bench._common import Table, machine, quantile
from parley.kit import db
from parley.kit.db import Sessions
from parley.kit.devstack import EmbeddedPostgres
from parley.retrieval import store
from parley.retrieval.bm25 import BM25_DEFAULTS, Bm25Parameters
from parley.retrieval.hybrid_search import DEFAULT_EF_SEARCH, Mode, Searcher, search_query
from parley.retrieval.keyword_index import KeywordIndex
from parley.retrieval.minilm import MiniLmEmbedder
from parley.retrieval.store import ChunkFilters, SearchScope
from parley.retrieval.vectors import Vectors

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "cranfield"
CACHE = Path.home() / ".cache" / "parley-bench"
TENANT = "lab"
COLLECTION = "corpus"
SCALE_TENANT = "scale"
DEPTH = 100  # how deep each list goes before fusion, and recall@100's cut
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
EF_SEARCH_VALUES = (20, 40, 100, 200, 400)
EXACT = Bm25Parameters(candidates_per_term=None)
GRID_K1 = (0.9, 1.2, 1.5, 1.8, 2.0)
GRID_B = (0.6, 0.75, 0.9)
# On 1,400 abstracts 14 best postings a term are the same share of a common term's as 1,000 are at
# 100k chunks: the service's candidate generation as it would be at that scale.
SMALL_SET_VARIANTS = (
    Bm25Parameters(candidates_per_term=14, candidates_per_result=1, rounds=1),
    Bm25Parameters(candidates_per_term=14, candidates_per_result=1, rescored_per_result=10, rounds=1),
    Bm25Parameters(candidates_per_term=14, candidates_per_result=1, rescored_per_result=25, rounds=1),
    Bm25Parameters(candidates_per_term=14, candidates_per_result=1, rounds=2),
    Bm25Parameters(candidates_per_term=14, candidates_per_result=1, rounds=3),
)
# Rounds spelled out: the default is 2, and 1 against 2 is the trade the rows show.
SCALE_VARIANTS = (
    EXACT,
    Bm25Parameters(candidates_per_term=250, candidates_per_result=5, rounds=1),
    Bm25Parameters(candidates_per_term=250, candidates_per_result=5, rounds=2),
    Bm25Parameters(candidates_per_term=1000, candidates_per_result=10, rounds=1),
    BM25_DEFAULTS,
    Bm25Parameters(candidates_per_term=1000, candidates_per_result=10, rescored_per_result=10, rounds=1),
)
CHUNKS_PER_SCALE_DOCUMENT = 20


def describe(bm25: Bm25Parameters) -> str:
    if bm25.candidates_per_term is None:
        return "every posting (exact)"
    default = " (the default)" if bm25 == BM25_DEFAULTS else ""
    return (
        f"best max({bm25.candidates_per_term}, {bm25.candidates_per_result} x limit) postings a term,"
        f" {bm25.rescored_per_result} x limit rescored, at most {bm25.rounds} read{'s' if bm25.rounds > 1 else ''}"
        f"{default}"
    )


Ranking = list[str]
Hits = list[tuple[str, float]]


@dataclass(frozen=True, slots=True)
class Dataset:
    corpus: dict[str, str]
    # Each text as BEIR's loaders join it (title + " " + text; Cranfield's title so counts twice), as
    # figures published elsewhere were computed: issue 8's bm25s reference reproduces only on these.
    beir_corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load(folder: Path) -> Dataset:
    corpus, beir_corpus = {}, {}
    for line in (folder / "corpus.jsonl").open():
        record = json.loads(line)
        # Cranfield's text already starts with its title; elsewhere put the title first, as a heading would be.
        title, body = record.get("title", ""), record["text"]
        corpus[str(record["_id"])] = body if body.startswith(title.rstrip(" .")) else f"{title}\n{body}".strip()
        beir_corpus[str(record["_id"])] = f"{title} {body}".strip()
    qrels: dict[str, dict[str, int]] = {}
    for line in list((folder / "qrels" / "test.tsv").open())[1:]:
        query_id, doc_id, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(query_id, {})[doc_id] = int(score)
    queries = {}
    for line in (folder / "queries.jsonl").open():
        record = json.loads(line)
        if str(record["_id"]) in qrels:
            queries[str(record["_id"])] = record["text"]
    return Dataset(corpus=corpus, beir_corpus=beir_corpus, queries=queries, qrels=qrels)


# --- metrics ----------------------------------------------------------------------------------


def ndcg_at_10(ranking: Ranking, relevant: dict[str, int], *, binary: bool) -> float:
    # Linear gains, as pytrec_eval (and so BEIR) computes them.
    def gain(doc_id: str) -> float:
        grade = relevant.get(doc_id, 0)
        return float(grade > 0) if binary else float(grade)

    dcg = sum(gain(doc_id) / math.log2(rank + 2) for rank, doc_id in enumerate(ranking[:10]))
    ideal = sorted((1.0 if binary else float(grade) for grade in relevant.values()), reverse=True)[:10]
    idcg = sum(value / math.log2(rank + 2) for rank, value in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranking: Ranking, relevant: dict[str, int], cut: int) -> float:
    return len(set(ranking[:cut]) & relevant.keys()) / len(relevant)


def mrr_at_10(ranking: Ranking, relevant: dict[str, int]) -> float:
    return next((1.0 / (rank + 1) for rank, doc_id in enumerate(ranking[:10]) if doc_id in relevant), 0.0)


def quality_row(name: str, rankings: dict[str, Ranking], qrels: dict[str, dict[str, int]]) -> list[str]:
    def mean(metric: Callable[[Ranking, dict[str, int]], float]) -> str:
        return f"{statistics.fmean(metric(rankings[q], qrels[q]) for q in rankings):.3f}"

    return [
        name,
        mean(lambda r, rel: ndcg_at_10(r, rel, binary=False)),
        mean(lambda r, rel: ndcg_at_10(r, rel, binary=True)),
        mean(lambda r, rel: recall_at(r, rel, 10)),
        mean(lambda r, rel: recall_at(r, rel, 100)),
        mean(mrr_at_10),
    ]


def percentiles(samples_ms: Sequence[float]) -> tuple[str, str]:
    return f"{statistics.median(samples_ms):.1f}", f"{quantile(samples_ms, 0.99):.1f}"


# --- fusion -----------------------------------------------------------------------------------


def rrf(keyword: Ranking, vector: Ranking, *, keyword_weight: float, k: int = 60) -> Ranking:
    """Reciprocal rank fusion with a weight per list (the vector list gets 1 - keyword_weight)."""
    scores: dict[str, float] = {}
    for ranking, weight in ((keyword, keyword_weight), (vector, 1.0 - keyword_weight)):
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
    return sorted(scores, key=lambda chunk_id: (-scores[chunk_id], chunk_id))


def score_fusion(
    keyword: list[tuple[str, float]], vector: list[tuple[str, float]], *, keyword_weight: float
) -> Ranking:
    """Min-max normalised scores, summed with weights; a chunk missing from a list gets 0 there."""
    scores: dict[str, float] = {}
    for hits, weight in ((keyword, keyword_weight), (vector, 1.0 - keyword_weight)):
        if not hits:
            continue
        high, low = hits[0][1], hits[-1][1]
        spread = (high - low) or 1.0
        for chunk_id, score in hits:
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight * (score - low) / spread
    return sorted(scores, key=lambda chunk_id: (-scores[chunk_id], chunk_id))


# --- the database -----------------------------------------------------------------------------


async def insert_chunks(
    sessions: Sessions,
    bm25: Bm25Parameters,
    *,
    tenant_id: str,
    documents: dict[str, list[tuple[str, str, list[float]]]],
) -> None:
    """documents: document id -> its chunks as (chunk id, text, vector); each vector stored as the
    configured MiniLM's in chunk_embeddings, as the Indexer stores it."""
    for document_id, chunks in documents.items():
        async with sessions() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO retrieval.chunks (chunk_id, tenant_id, collection_id, document_id, version, ordinal,"
                    " text, token_count) VALUES (:chunk_id, :tenant_id, :collection_id, :document_id, 1, :ordinal,"
                    " :text, :token_count)"
                ),
                [
                    {
                        "chunk_id": chunk_id,
                        "tenant_id": tenant_id,
                        "collection_id": COLLECTION,
                        "document_id": document_id,
                        "ordinal": ordinal,
                        "text": body,
                        "token_count": len(body.split()),
                    }
                    for ordinal, (chunk_id, body, _) in enumerate(chunks)
                ],
            )
            await store.add_vectors(
                session=session,
                tenant_id=tenant_id,
                model=MiniLmEmbedder.name,
                vectors={chunk_id: vector for chunk_id, _, vector in chunks},
            )
            await store.replace_postings(
                session=session,
                tenant_id=tenant_id,
                collection_id=COLLECTION,
                document_id=document_id,
                texts={chunk_id: body for chunk_id, body, _ in chunks},
                bm25=bm25,
            )


async def build_hnsw(engine: AsyncEngine, *, rebuild: bool = True) -> float:
    """MiniLM's partial HNSW index, (re)built as the service builds it at start
    (store.ensure_vector_index: concurrently, m 16, ef_construction 64), after the bulk insert,
    which is much faster than row by row. rebuild False: only if it is missing."""
    started = time.perf_counter()
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("SET maintenance_work_mem = '1GB'"))
        if rebuild:
            await autocommit.execute(
                text(f'DROP INDEX IF EXISTS retrieval."{store.vector_index_name(MiniLmEmbedder.name)}"')
            )
        if not await store.ensure_vector_index(
            connection=autocommit, model=MiniLmEmbedder.name, dimensions=MiniLmEmbedder.dimensions
        ):
            raise RuntimeError("another process holds the vector index's build lock")
        await autocommit.execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - started


class Modes:
    def __init__(self, sessions: Sessions, vectors: Vectors, tenant_id: str) -> None:
        self._sessions = sessions
        self._vectors = vectors
        self._tenant_id = tenant_id

    async def keyword(
        self,
        query: str,
        limit: int = DEPTH,
        *,
        bm25: Bm25Parameters = BM25_DEFAULTS,
        keyword_index: KeywordIndex | None = None,
    ) -> Hits:
        """The service's keyword leg (Searcher.keyword_leg), in a transaction given to the tenant as
        its are: from PostgreSQL's postings, or from the copy in `keyword_index`."""
        searcher = Searcher(sessions=self._sessions, vectors=self._vectors, bm25=bm25, keyword_index=keyword_index)
        scope = SearchScope(tenant_id=self._tenant_id, collection_ids=[COLLECTION], limit=limit)
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=self._tenant_id)
            hits = await searcher.keyword_leg(session=session, scope=scope, text=query)
        return [(hit.chunk_id, hit.score) for hit in hits]

    async def filtered_vector(self, query: str, document_id: str, k: int = 10) -> Hits:
        searcher = Searcher(sessions=self._sessions, vectors=self._vectors)
        hits = await searcher.search(
            tenant_id=self._tenant_id,
            query=search_query(
                text=query,
                collection_ids=[COLLECTION],
                k=k,
                mode=Mode.VECTOR,
                filters=ChunkFilters(document_ids=[document_id]),
            ),
        )
        return [(hit.chunk_id, hit.score) for hit in hits.hits]

    async def hybrid(
        self,
        query: str,
        k: int = 10,
        *,
        bm25: Bm25Parameters = BM25_DEFAULTS,
        keyword_index: KeywordIndex | None = None,
    ) -> Hits:
        """A whole search as the service runs it (Searcher.search): the query's vector (through the
        embedding cache, or for a local model those kept in process), both legs at once on two
        connections, fusion and highlights."""
        searcher = Searcher(sessions=self._sessions, vectors=self._vectors, bm25=bm25, keyword_index=keyword_index)
        hits = await searcher.search(
            tenant_id=self._tenant_id,
            query=search_query(text=query, collection_ids=[COLLECTION], k=k, mode=Mode.HYBRID),
        )
        return [(hit.chunk_id, hit.score) for hit in hits.hits]

    async def keyword_today(self, query: str, limit: int = DEPTH) -> list[tuple[str, float]]:
        async with self._sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT chunk_id, ts_rank_cd(tsv, q) AS score"
                    " FROM retrieval.chunks, websearch_to_tsquery('english', :query) AS q"
                    " WHERE tenant_id = :tenant_id AND collection_id = :collection_id AND tsv @@ q"
                    " ORDER BY score DESC, chunk_id LIMIT :limit"
                ),
                {"query": query, "tenant_id": self._tenant_id, "collection_id": COLLECTION, "limit": limit},
            )
            return [(row.chunk_id, float(row.score)) for row in rows]

    async def vector(self, embedding: list[float], *, ef_search: int | None, limit: int = DEPTH) -> Hits:
        """The service's vector read (store.vector_search on MiniLM's partial HNSW index) with that
        ef_search; None: the same statement exact, index scans off (a scan of the model's vectors)."""
        return (await self._vector(embedding, ef_search=ef_search, limit=limit, count_scans=False))[0]

    async def index_scans(self, embedding: list[float], *, ef_search: int | None) -> int:
        """How many times `vector` scanned MiniLM's HNSW index: the proof that HNSW rows are the
        partial index's and exact rows are not."""
        return (await self._vector(embedding, ef_search=ef_search, limit=10, count_scans=True))[1]

    async def _vector(
        self, embedding: list[float], *, ef_search: int | None, limit: int, count_scans: bool
    ) -> tuple[Hits, int]:
        scope = SearchScope(tenant_id=self._tenant_id, collection_ids=[COLLECTION], limit=limit)
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=self._tenant_id)
            if ef_search is None:
                # Custom plans only: psycopg prepares a statement run 5 times, and a generic plan
                # PostgreSQL made now, index scans off, would stay cached for this connection's
                # later HNSW searches (the same statement) after the setting is gone.
                await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
                await session.execute(text("SET LOCAL enable_indexscan = off"))
            scans_before = await self._index_scans(session) if count_scans else 0
            hits = await store.vector_search(
                session=session,
                scope=scope,
                embedding=embedding,
                model=MiniLmEmbedder.name,
                dimensions=MiniLmEmbedder.dimensions,
                ef_search=ef_search or DEFAULT_EF_SEARCH,
            )
            scans = await self._index_scans(session) - scans_before if count_scans else 0
        return [(hit.chunk_id, hit.score) for hit in hits], scans

    @staticmethod
    async def _index_scans(session: AsyncSession) -> int:
        # The backend's scans of the index not yet reported to the statistics (which, since
        # PostgreSQL 15, may include earlier transactions'): only a difference means anything.
        scans = await session.scalar(
            text("SELECT pg_stat_get_xact_numscans(to_regclass(:index))"),
            {"index": f'retrieval."{store.vector_index_name(MiniLmEmbedder.name)}"'},
        )
        return int(scans or 0)


async def forget_query_vectors(sessions: Sessions) -> None:
    """Empty the embedding cache (in the lab it holds only queries' vectors: chunks' are written
    directly), so the next searches embed their queries as a first search would."""
    async with sessions() as session, session.begin():
        await session.execute(text("DELETE FROM retrieval.embedding_cache"))


async def timed(action: Callable[[], Awaitable[Hits]]) -> tuple[Hits, float]:
    started = time.perf_counter()
    result = await action()
    return result, (time.perf_counter() - started) * 1000


# --- the runs ---------------------------------------------------------------------------------


def corpus_vectors(embedder: MiniLmEmbedder, corpus: dict[str, str]) -> dict[str, list[float]]:
    """The corpus's vectors, cached on disk by model and corpus (embedding 1,400 abstracts takes minutes)."""
    digest = hashlib.sha256(json.dumps(corpus, sort_keys=True).encode()).hexdigest()[:16]
    path = CACHE / f"{embedder.name}-{digest}.npy"
    ids = sorted(corpus)
    if path.exists():
        matrix = np.load(path)
    else:
        started = time.perf_counter()
        matrix = np.array(embedder.embed_now([corpus[doc_id] for doc_id in ids]).vectors, dtype=np.float32)
        print(f"(embedded {len(ids)} texts in {time.perf_counter() - started:.0f} s)", flush=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, matrix)
    return {doc_id: matrix[index].tolist() for index, doc_id in enumerate(ids)}


def bm25s_reference(
    dataset: Dataset, corpus: dict[str, str], **parameters: float
) -> tuple[dict[str, Ranking], list[float]] | None:
    """bm25s.BM25(**parameters): none given, the library's defaults (k1 1.5, b 0.75, method lucene)."""
    try:
        import bm25s  # type: ignore[import-untyped, import-not-found, unused-ignore]  # the [bench] extra
        import Stemmer  # type: ignore[import-not-found]
    except ImportError:
        print("(bm25s reference skipped: .venv/bin/uv sync --group bench)")
        return None
    stemmer = Stemmer.Stemmer("english")
    ids = list(corpus)
    retriever = bm25s.BM25(**parameters)
    retriever.index(
        bm25s.tokenize([corpus[i] for i in ids], stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    rankings: dict[str, Ranking] = {}
    latencies: list[float] = []
    for query_id, query in dataset.queries.items():
        started = time.perf_counter()
        tokens = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, show_progress=False)
        documents, _ = retriever.retrieve(tokens, k=DEPTH, show_progress=False)
        latencies.append((time.perf_counter() - started) * 1000)
        rankings[query_id] = [ids[index] for index in documents[0]]
    return rankings, latencies


async def quality(
    dataset: Dataset,
    modes: Modes,
    embedder: MiniLmEmbedder,
    sessions: Sessions,
    *,
    fusion_grid: bool,
    bm25_grid: bool,
) -> list[Table]:
    results: dict[str, dict[str, list[tuple[str, float]]]] = {
        name: {} for name in ("keyword", "keyword_today", "vector", "vector_hnsw")
    }
    latency: dict[str, list[float]] = {
        name: [] for name in ("keyword", "keyword_today", "vector", "vector_hnsw", "embed", "hybrid")
    }
    await forget_query_vectors(sessions)  # each query's one hybrid search embeds it, as a first search does
    for query_id, query in dataset.queries.items():
        started = time.perf_counter()
        embedding = (await embedder.embed([query])).vectors[0]
        latency["embed"].append((time.perf_counter() - started) * 1000)
        for name, action in (
            ("keyword", partial(modes.keyword, query)),
            ("keyword_today", partial(modes.keyword_today, query)),
            ("vector", partial(modes.vector, embedding, ef_search=None)),
            ("vector_hnsw", partial(modes.vector, embedding, ef_search=DEFAULT_EF_SEARCH)),
        ):
            hits, elapsed = await timed(action)
            results[name][query_id] = hits
            latency[name].append(elapsed)
        latency["hybrid"].append((await timed(partial(modes.hybrid, query)))[1])

    def ranked(name: str) -> dict[str, Ranking]:
        return {q: [chunk for chunk, _ in hits] for q, hits in results[name].items()}

    columns = ("mode", "nDCG@10 graded", "nDCG@10 binary", "recall@10", "recall@100", "MRR@10")
    table = Table(f"Retrieval quality ({len(dataset.corpus)} documents, {len(dataset.queries)} queries)", columns)
    reference = bm25s_reference(dataset, dataset.corpus, k1=1.2, b=0.75)
    if reference is not None:
        table.add(
            *quality_row(
                "bm25s reference (in process; k1 1.2, b 0.75, Snowball, stop words)", reference[0], dataset.qrels
            )
        )
        for corpus, which in ((dataset.corpus, ""), (dataset.beir_corpus, ", on BEIR's title + text (title twice)")):
            library_defaults = bm25s_reference(dataset, corpus)
            assert library_defaults is not None
            table.add(
                *quality_row(
                    f"bm25s with its defaults (k1 1.5, b 0.75, method lucene; Snowball, stop words){which}",
                    library_defaults[0],
                    dataset.qrels,
                )
            )
    table.add(
        *quality_row(f"keyword: BM25 (k1 1.2, b 0.75), {describe(BM25_DEFAULTS)}", ranked("keyword"), dataset.qrels)
    )
    exact = {q: [chunk for chunk, _ in await modes.keyword(query, bm25=EXACT)] for q, query in dataset.queries.items()}
    table.add(*quality_row(f"keyword: BM25, {describe(EXACT)}", exact, dataset.qrels))
    for variant in SMALL_SET_VARIANTS:
        # Top 10 only (their recall@100 is not comparable): limit 10 is what makes 14 a term's share.
        ranked_variant = {
            q: [chunk for chunk, _ in await modes.keyword(query, 10, bm25=variant)]
            for q, query in dataset.queries.items()
        }
        table.add(*quality_row(f"keyword: BM25, top 10, {describe(variant)}", ranked_variant, dataset.qrels))
    table.add(
        *quality_row("keyword as today: websearch_to_tsquery + ts_rank_cd", ranked("keyword_today"), dataset.qrels)
    )
    table.add(*quality_row("vector: MiniLM int8, exact", ranked("vector"), dataset.qrels))
    table.add(
        *quality_row(f"vector: MiniLM int8, HNSW ef_search {DEFAULT_EF_SEARCH}", ranked("vector_hnsw"), dataset.qrels)
    )
    keyword, vector = results["keyword"], results["vector_hnsw"]
    weights = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7) if fusion_grid else (0.3, 0.5)
    for weight in weights:
        fused = {q: rrf(ranked("keyword")[q], ranked("vector_hnsw")[q], keyword_weight=weight) for q in dataset.queries}
        table.add(*quality_row(f"hybrid: RRF k 60, keyword weight {weight}", fused, dataset.qrels))
    # The service fuses shallower lists: candidates_for(k) = 4k, so 40 a leg for a k of 10.
    fused = {
        q: rrf(ranked("keyword")[q][:40], ranked("vector_hnsw")[q][:40], keyword_weight=0.5) for q in dataset.queries
    }
    table.add(*quality_row("hybrid: RRF k 60, keyword weight 0.5, 40 candidates a leg", fused, dataset.qrels))
    for weight in weights:
        fused = {q: score_fusion(keyword[q], vector[q], keyword_weight=weight) for q in dataset.queries}
        table.add(*quality_row(f"hybrid: min-max score fusion, keyword weight {weight}", fused, dataset.qrels))
    table.notes.append("Relevance from qrels/test.tsv; binary counts every judged grade as relevant; gains are linear.")

    speed = Table("Query latency, ms (one query at a time)", ("mode", "p50", "p99"))
    if reference is not None:
        speed.add("bm25s reference (in process)", *percentiles(reference[1]))
    for name, label in (
        ("embed", "query embedding (MiniLM int8, 1 thread)"),
        ("keyword", "keyword: BM25 in PostgreSQL"),
        ("keyword_today", "keyword as today"),
        ("vector", "vector, exact"),
        ("vector_hnsw", f"vector, HNSW ef_search {DEFAULT_EF_SEARCH}"),
        (
            "hybrid",
            "hybrid, k 10, as the service runs it: query embedded (not cached) + both legs at once + RRF + highlights",
        ),
    ):
        speed.add(label, *percentiles(latency[name]))
    return [table, speed, await k1_b_grid(dataset, modes, ranked("vector_hnsw"))] if bm25_grid else [table, speed]


async def k1_b_grid(dataset: Dataset, modes: Modes, vector: dict[str, Ranking]) -> Table:
    """BM25's k1 and b on the exact keyword leg (both applied at query time: no re-index), on bm25s,
    and on hybrid search: RRF of that leg with HNSW vector search, and Searcher.search itself."""

    def ndcg(rankings: dict[str, Ranking]) -> str:
        graded, binary = (
            statistics.fmean(ndcg_at_10(rankings[q], dataset.qrels[q], binary=binary) for q in rankings)
            for binary in (False, True)
        )
        return f"{graded:.3f} / {binary:.3f}"

    table = Table(
        "BM25's k1 and b: nDCG@10 graded / binary",
        (
            "k1",
            "b",
            "keyword: exact BM25",
            "bm25s (method lucene)",
            "hybrid: RRF k 60, keyword weight 0.5",
            "hybrid as the service runs it (k 10)",
        ),
    )
    for k1 in GRID_K1:
        for b in GRID_B:
            keyword = {
                q: [chunk for chunk, _ in await modes.keyword(query, bm25=replace(EXACT, k1=k1, b=b))]
                for q, query in dataset.queries.items()
            }
            service = {
                q: [chunk for chunk, _ in await modes.hybrid(query, bm25=replace(BM25_DEFAULTS, k1=k1, b=b))]
                for q, query in dataset.queries.items()
            }
            reference = bm25s_reference(dataset, dataset.corpus, k1=k1, b=b)
            table.add(
                k1,
                b,
                ndcg(keyword),
                ndcg(reference[0]) if reference is not None else "—",
                ndcg({q: rrf(keyword[q], vector[q], keyword_weight=0.5) for q in dataset.queries}),
                ndcg(service),
            )
    table.notes.append(
        "RRF fuses each leg's top 100. The service's hybrid runs the default keyword leg (candidates,"
        " then exact rescoring) with these k1 and b over postings whose impacts were written at k1 1.2, b 0.75."
    )
    return table


def mixed(first: str, second: str) -> str:
    """The first half of one abstract and the second half of another."""
    head, tail = first.split(), second.split()
    return " ".join(head[: len(head) // 2] + tail[len(tail) // 2 :])


async def index_scale(
    dataset: Dataset,
    vectors: dict[str, list[float]],
    sessions: Sessions,
    engine: AsyncEngine,
    bm25: Bm25Parameters,
    size: int,
) -> str:
    rng = random.Random(8)
    ids = sorted(dataset.corpus)
    documents: dict[str, list[tuple[str, str, list[float]]]] = {}
    started = time.perf_counter()
    for index in range(size):
        # Two random abstracts blended: points spread over the space the real ones span, with no
        # clusters of near-duplicates (which no real corpus has, and which HNSW handles badly).
        first, second = ids[rng.randrange(len(ids))], ids[rng.randrange(len(ids))]
        blend = np.array(vectors[first], dtype=np.float32) + np.array(vectors[second], dtype=np.float32)
        blend += np.array([rng.gauss(0.0, 0.01) for _ in range(blend.size)], dtype=np.float32)
        blend /= np.linalg.norm(blend)
        document_id = f"s{index // CHUNKS_PER_SCALE_DOCUMENT}"
        documents.setdefault(document_id, []).append(
            (f"s{index}", mixed(dataset.corpus[first], dataset.corpus[second]), blend.tolist())
        )
    await insert_chunks(sessions, bm25, tenant_id=SCALE_TENANT, documents=documents)
    indexing_seconds = time.perf_counter() - started
    print(f"(indexed {size:,} synthetic chunks in {indexing_seconds:.0f} s)", flush=True)
    hnsw_seconds = await build_hnsw(engine)
    print(f"(HNSW built in {hnsw_seconds:.0f} s)", flush=True)
    return (
        f"Indexing {size:,} chunks (insert + BM25 postings, {CHUNKS_PER_SCALE_DOCUMENT} chunks a document):"
        f" {indexing_seconds:.0f} s; HNSW build (m {HNSW_M}, ef_construction {HNSW_EF_CONSTRUCTION}):"
        f" {hnsw_seconds:.0f} s."
    )


async def scale(
    dataset: Dataset,
    vectors: dict[str, list[float]],
    sessions: Sessions,
    engine: AsyncEngine,
    bm25: Bm25Parameters,
    embedder: MiniLmEmbedder,
    service_vectors: Vectors,
    size: int,
) -> list[Table]:
    async with sessions() as session:
        present = await session.scalar(
            text("SELECT count(*) FROM retrieval.chunks WHERE tenant_id = :t"), {"t": SCALE_TENANT}
        )
    if present not in (0, size):
        raise SystemExit(f"{present:,} synthetic chunks already in --data, not {size:,}: use another folder")
    if present != size:
        indexing_note = await index_scale(dataset, vectors, sessions, engine, bm25, size)
    else:
        indexing_note = "(reused the index of an earlier run)"
    async with sessions() as session:
        postings = await session.scalar(text("SELECT count(*) FROM retrieval.bm25_postings"))
        sizes = (
            await session.execute(
                text(
                    "SELECT pg_size_pretty(pg_total_relation_size('retrieval.bm25_postings')) AS postings,"
                    " pg_size_pretty(pg_total_relation_size('retrieval.chunks')) AS chunks,"
                    " pg_size_pretty(pg_total_relation_size('retrieval.chunk_embeddings')) AS vectors"
                )
            )
        ).one()

    modes = Modes(sessions, service_vectors, SCALE_TENANT)
    queries = list(dataset.queries.values())
    embeddings = [(await embedder.embed([query])).vectors[0] for query in queries]
    exact = [[chunk for chunk, _ in await modes.vector(e, ef_search=None, limit=10)] for e in embeddings]

    speed = Table(
        f"At {size:,} chunks (synthetic: halves of two abstracts, their vectors blended; {len(queries)} queries)",
        ("mode", "p50 ms", "p99 ms", "top 10 vs exact"),
    )
    samples = []
    for query in queries:
        started = time.perf_counter()
        await embedder.embed([query])
        samples.append((time.perf_counter() - started) * 1000)
    speed.add("query embedding (MiniLM int8, 1 thread)", *percentiles(samples), "")
    for ef_search in EF_SEARCH_VALUES:
        samples, recalls = [], []
        for embedding, truth in zip(embeddings, exact, strict=True):
            hits, elapsed = await timed(partial(modes.vector, embedding, ef_search=ef_search, limit=40))
            samples.append(elapsed)
            recalls.append(len({chunk for chunk, _ in hits[:10]} & set(truth)) / 10)
        chosen = " (the service's)" if ef_search == DEFAULT_EF_SEARCH else ""
        speed.add(
            f"vector, HNSW ef_search {ef_search}{chosen}, top 40",
            *percentiles(samples),
            f"recall@10 {statistics.fmean(recalls):.3f}",
        )
    samples = [(await timed(partial(modes.vector, e, ef_search=None, limit=40)))[1] for e in embeddings[:50]]
    speed.add("vector, exact (50 queries), top 40", *percentiles(samples), "1")
    # After the timed searches, on connections that have run both kinds many times: what the
    # rows above measured, not only what a fresh connection would plan.
    index_scans = {
        "HNSW": await modes.index_scans(embeddings[0], ef_search=DEFAULT_EF_SEARCH),
        "exact": await modes.index_scans(embeddings[0], ef_search=None),
    }
    if not index_scans["HNSW"] or index_scans["exact"]:
        raise SystemExit(f"the vector rows did not compare the HNSW index with an exact scan: {index_scans}")
    exact_keyword: list[list[str]] = []
    for variant in SCALE_VARIANTS:
        samples, overlaps = [], []
        for index, query in enumerate(queries):
            hits, elapsed = await timed(partial(modes.keyword, query, limit=40, bm25=variant))
            samples.append(elapsed)
            top = [chunk for chunk, _ in hits[:10]]
            if variant is EXACT:
                exact_keyword.append(top)
            overlaps.append(len(set(top) & set(exact_keyword[index])) / max(1, len(exact_keyword[index])))
        speed.add(
            f"keyword: BM25, {describe(variant)}, top 40",
            *percentiles(samples),
            f"overlap@10 {statistics.fmean(overlaps):.3f}",
        )
    # The service's default keyword leg: exact BM25 over the collection's postings copied into
    # memory (keyword_index.py), loaded as at the service's start.
    in_memory = KeywordIndex(sessions=sessions, max_postings=postings + 1, load_inline_chunks=0)
    started = time.perf_counter()
    await in_memory.warm(asyncio.Event())
    load_seconds = time.perf_counter() - started
    samples, overlaps = [], []
    for index, query in enumerate(queries):
        hits, elapsed = await timed(partial(modes.keyword, query, limit=40, keyword_index=in_memory))
        samples.append(elapsed)
        overlaps.append(
            len({chunk for chunk, _ in hits[:10]} & set(exact_keyword[index])) / max(1, len(exact_keyword[index]))
        )
    speed.add(
        "keyword: exact BM25 from the postings copied into memory (the service's default), top 40",
        *percentiles(samples),
        f"overlap@10 {statistics.fmean(overlaps):.3f}",
    )
    # A service that has been answering: every query once with other words (still new texts
    # below), so the first timed searches do not read cold pages.
    for query in queries:
        await modes.hybrid(f"{query} (warm-up)", keyword_index=in_memory)
    await forget_query_vectors(sessions)
    for cache in (
        "a new query (embedded by MiniLM on the search's path)",
        "the same query again (its vector kept by the service: vectors.py)",
    ):
        samples = [(await timed(partial(modes.hybrid, query, keyword_index=in_memory)))[1] for query in queries]
        speed.add(
            "hybrid, k 10, as the service runs it (query vector + both legs at once, keyword from memory"
            f" + RRF + highlights), {cache}",
            *percentiles(samples),
            "",
        )
    samples = [(await timed(partial(modes.hybrid, query)))[1] for query in queries]
    speed.add(
        f"hybrid as above, query's vector from the cache, keyword leg from PostgreSQL ({describe(BM25_DEFAULTS)})",
        *percentiles(samples),
        "",
    )
    # A filter the HNSW scan cannot see (one document's chunks): iterative scans must keep going
    # until k pass, or fall to an exact scan of the few; either way k come back.
    samples, counts = [], []
    for index, query in enumerate(queries):
        document_id = f"s{index % (size // CHUNKS_PER_SCALE_DOCUMENT)}"
        hits, elapsed = await timed(partial(modes.filtered_vector, query, document_id))
        samples.append(elapsed)
        counts.append(len(hits))
    speed.add(
        f"vector, k 10, filtered to one document ({CHUNKS_PER_SCALE_DOCUMENT} chunks), as the service runs it",
        *percentiles(samples),
        f"{statistics.fmean(counts):.1f} hits of 10",
    )
    speed.notes.append(
        f"Loading the {size:,} chunks' postings into memory (KeywordIndex.warm, as at the service's start):"
        f" {load_seconds:.1f} s."
    )
    speed.notes.append(
        f"{indexing_note} {postings:,} postings rows, bm25_postings {sizes.postings}, chunks {sizes.chunks},"
        f" chunk_embeddings {sizes.vectors}."
    )
    speed.notes.append(
        "Vector rows: store.vector_search (the service's statement) on MiniLM's partial HNSW index"
        f" ({store.vector_index_name(MiniLmEmbedder.name)}, built by store.ensure_vector_index); exact is the"
        " same statement in a transaction with SET LOCAL enable_indexscan = off (and plan_cache_mode ="
        " force_custom_plan, so no generic plan without the index is cached for the connection). Checked"
        f" after the timed searches with pg_stat_get_xact_numscans on the index: {index_scans['HNSW']} scan(s)"
        f" for HNSW, {index_scans['exact']} for exact."
    )
    return [speed]


async def main_async(
    folder: Path, size: int, fusion_grid: bool, bm25_grid: bool, data: Path | None, scale_only: bool
) -> None:
    dataset = load(folder)
    embedder = MiniLmEmbedder(threads=1)
    vectors = corpus_vectors(MiniLmEmbedder(threads=2, batch_size=8), dataset.corpus)
    await embedder.warm_up()
    with contextlib.ExitStack() as stack:
        root = data or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="retrieval-lab-")))
        postgres = EmbeddedPostgres(root / "postgres")
        # No statement timeout: building HNSW over 100k vectors takes minutes.
        engine = db.create_engine(postgres.start(), statement_timeout_ms=0)
        try:
            sessions = db.session_factory(engine)
            service_vectors = Vectors(sessions=sessions, engine=engine, embedder=embedder)
            bm25 = BM25_DEFAULTS
            await db.migrate(
                engine, schema="retrieval", migrations=Path(parley.retrieval.__file__).parent / "migrations"
            )
            async with engine.connect() as connection:
                indexed = await connection.scalar(
                    text("SELECT count(*) > 0 FROM retrieval.chunks WHERE tenant_id = :t"), {"t": TENANT}
                )
            if not indexed:
                started = time.perf_counter()
                await insert_chunks(
                    sessions,
                    bm25,
                    tenant_id=TENANT,
                    documents={doc_id: [(doc_id, body, vectors[doc_id])] for doc_id, body in dataset.corpus.items()},
                )
                print(f"(indexed {len(dataset.corpus)} documents in {time.perf_counter() - started:.1f} s)", flush=True)
            # A reused --data folder from before vectors per model is migrated, not indexed.
            await build_hnsw(engine, rebuild=not indexed)
            tables = (
                []
                if scale_only
                else await quality(
                    dataset,
                    Modes(sessions, service_vectors, TENANT),
                    embedder,
                    sessions,
                    fusion_grid=fusion_grid,
                    bm25_grid=bm25_grid,
                )
            )
            if size:
                tables += await scale(dataset, vectors, sessions, engine, bm25, embedder, service_vectors, size)
        finally:
            await engine.dispose()
            postgres.stop()
    print("\n".join(f"- {line}" for line in machine()))
    for table in tables:
        print()
        print(table.render())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER, help="a BEIR-layout data set")
    parser.add_argument("--scale", type=int, default=0, help="also time the modes at this many synthetic chunks")
    parser.add_argument("--fusion-grid", action="store_true", help="more fusion weights (to choose the default)")
    parser.add_argument("--bm25-grid", action="store_true", help="BM25's k1 and b over a grid (to choose them)")
    parser.add_argument("--scale-only", action="store_true", help="only the tables at --scale N chunks")
    parser.add_argument("--data", type=Path, help="keep PostgreSQL's data here and reuse what is indexed there")
    args = parser.parse_args(argv)
    if not (args.folder / "corpus.jsonl").exists():
        print(f"skipped: no BEIR data set at {args.folder} (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
        return 0
    asyncio.run(main_async(args.folder, args.scale, args.fusion_grid, args.bm25_grid, args.data, args.scale_only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
