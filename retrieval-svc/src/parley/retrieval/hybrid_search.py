"""Search over the index: keyword (BM25, see bm25.py), vector (pgvector cosine over the serving
model's vectors, see vectors.py), and hybrid, which fuses the two ranked lists by weighted reciprocal rank; plus
positional reads (neighbours, chunks by id). Every hit carries a highlight: its best passage for
the query, HTML-escaped, with the matching words in <mark></mark>.

Each leg is a method of its own, so either can be replaced without touching fusion or the other.
A hybrid search whose query cannot be embedded (the embeddings provider unreachable) answers from
the keyword leg alone and says so (`Found.degraded`); a vector search has nothing to fall back on
and is Unavailable.
"""

import asyncio
import contextlib
import enum
import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncSession

from parley.kit.contracts import (
    MAX_COLLECTIONS_PER_CONVERSATION,
    MAX_EMBED_TEXTS,
    MAX_FILTER_VALUES,
    MAX_HEADING_FILTER_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_QUERY_CHARS,
    MAX_SEARCH_K,
)
from parley.kit.db import Sessions
from parley.kit.errors import InvalidInput, NotFound, Unavailable
from parley.kit.identity import Identity
from parley.retrieval import store
from parley.retrieval.bm25 import BM25_DEFAULTS, DEEPER, Bm25Parameters, candidates_per_term, rescored
from parley.retrieval.embeddings import Embedder, is_zero
from parley.retrieval.keyword_index import KeywordIndex
from parley.retrieval.store import MARK_END, MARK_START, NO_FILTERS, ChunkFilters, Ranked, SearchScope, StoredChunk
from parley.retrieval.vectors import QueryVector, Vectors

log = logging.getLogger(__name__)

DEFAULT_K = 8
# What `Found.degraded` names: the vector leg, left out when the query could not be embedded.
VECTOR_LEG = "vector"
RRF_K = 60
MAX_NEIGHBOURS = 10
MAX_CHUNK_IDS = 100
DEFAULT_KEYWORD_WEIGHT = 0.5
# HNSW's candidate list (hnsw.ef_search), at least: the smallest that kept recall@10 against exact
# search >= 0.95 at 10k and 100k chunks (BENCHMARKS.md, "Retrieval"). A search deeper than this
# widens it to its own depth.
DEFAULT_EF_SEARCH = 100


class Mode(enum.Enum):
    HYBRID = "hybrid"
    VECTOR = "vector"
    KEYWORD = "keyword"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    collection_ids: tuple[str, ...]
    k: int
    mode: Mode
    filters: ChunkFilters = NO_FILTERS


def search_query(
    *, text: str, collection_ids: Sequence[str], k: int, mode: Mode, filters: ChunkFilters = NO_FILTERS
) -> SearchQuery:
    """A validated query, or InvalidInput naming what is wrong."""
    if not text.strip():
        raise InvalidInput("query must not be empty")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInput(f"query must be at most {MAX_QUERY_CHARS} characters")
    collections = _distinct(collection_ids)
    if not collections:
        raise InvalidInput("at least one collection id is required")
    # A search spans at most what a conversation may: chat searches a conversation's collections.
    if len(collections) > MAX_COLLECTIONS_PER_CONVERSATION:
        raise InvalidInput(f"at most {MAX_COLLECTIONS_PER_CONVERSATION} collections per search")
    if not 0 <= k <= MAX_SEARCH_K:
        raise InvalidInput(f"k must be between 1 and {MAX_SEARCH_K} (0 means {DEFAULT_K})")
    return SearchQuery(
        text=text, collection_ids=collections, k=k or DEFAULT_K, mode=mode, filters=_valid_filters(filters)
    )


def _valid_filters(filters: ChunkFilters) -> ChunkFilters:
    if len(filters.heading) > MAX_HEADING_FILTER_CHARS:
        raise InvalidInput(f"the heading filter must be at most {MAX_HEADING_FILTER_CHARS} characters")
    for name, values in (("scene_numbers", filters.scene_numbers), ("characters", filters.characters)):
        if len(values) > MAX_FILTER_VALUES:
            raise InvalidInput(f"at most {MAX_FILTER_VALUES} {name} per search")
    if filters.page_from < 0 or filters.page_to < 0:
        raise InvalidInput("page_from and page_to must be pages (from 1), or 0 for an open end")
    if filters.page_from and filters.page_to and filters.page_from > filters.page_to:
        raise InvalidInput("page_from must not be after page_to")
    return replace(
        filters,
        document_ids=_distinct(filters.document_ids),
        heading=filters.heading.strip(),
        scene_numbers=_distinct([number.strip() for number in filters.scene_numbers]),
        # Ingestion normalises cue names to upper case (EDWARD); so does a filter on them.
        characters=_distinct([name.strip().upper() for name in filters.characters]),
    )


def candidates_for(k: int) -> int:
    """How deep each list goes before fusion: deeper than k, so a chunk ranked well by one
    method and modestly by the other can still rise to the top."""
    return min(4 * k, 200)


def fuse(
    keyword: Sequence[Ranked],
    vector: Sequence[Ranked],
    *,
    keyword_weight: float,
    limit: int,
    rrf_k: int = RRF_K,
) -> list[Ranked]:
    """Weighted reciprocal rank fusion: a chunk scores the sum of weight / (rrf_k + rank) over the
    lists it is in; the keyword list weighs `keyword_weight`, the vector list the rest."""
    scores: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    for ranked, weight in ((keyword, keyword_weight), (vector, 1.0 - keyword_weight)):
        for rank, chunk in enumerate(ranked, start=1):
            scores[chunk.chunk_id] = scores.get(chunk.chunk_id, 0.0) + weight / (rrf_k + rank)
            best_rank[chunk.chunk_id] = min(rank, best_rank.get(chunk.chunk_id, rank))
    order = sorted(scores, key=lambda chunk_id: (-scores[chunk_id], best_rank[chunk_id], chunk_id))
    return [Ranked(chunk_id=chunk_id, score=scores[chunk_id]) for chunk_id in order[:limit]]


@dataclass(frozen=True, slots=True)
class Found:
    hits: list[StoredChunk]  # best first, each with its highlight
    degraded: tuple[str, ...] = ()  # the legs that could not run (VECTOR_LEG); the hits come from the rest


class Searcher:
    """Reads of the index for one tenant at a time; never writes."""

    def __init__(
        self,
        *,
        sessions: Sessions,
        vectors: Vectors,
        bm25: Bm25Parameters = BM25_DEFAULTS,
        keyword_index: KeywordIndex | None = None,
        keyword_weight: float = DEFAULT_KEYWORD_WEIGHT,
        ef_search: int = DEFAULT_EF_SEARCH,
    ) -> None:
        self._sessions = sessions
        self._vectors = vectors
        self._bm25 = bm25
        self._keyword_index = keyword_index
        self._keyword_weight = keyword_weight
        self._ef_search = ef_search

    async def embed(
        self,
        *,
        tenant_id: str,
        collection_ids: Sequence[str],
        texts: Sequence[str],
        billed_to: Identity | None = None,
    ) -> tuple[Embedder, list[list[float]], int]:
        """Texts embedded as these collections' chunks are (vectors.Vectors.embed_for)."""
        if not texts or len(texts) > MAX_EMBED_TEXTS:
            raise InvalidInput(f"embed 1 to {MAX_EMBED_TEXTS} texts")
        if any(not text or len(text) > MAX_MESSAGE_CHARS or "\x00" in text for text in texts):
            raise InvalidInput(f"each text must be 1 to {MAX_MESSAGE_CHARS} characters, without NUL")
        if len(collection_ids) > MAX_COLLECTIONS_PER_CONVERSATION:
            raise InvalidInput(f"at most {MAX_COLLECTIONS_PER_CONVERSATION} collections")
        return await self._vectors.embed_for(
            tenant_id=tenant_id, collection_ids=collection_ids, contents=texts, billed_to=billed_to
        )

    async def search(self, *, tenant_id: str, query: SearchQuery, billed_to: Identity | None = None) -> Found:
        """The best k chunks, best first, each with its highlight; the query's embedding is billed
        to `billed_to` (its user and API key), else to the tenant alone."""
        scope = SearchScope(
            tenant_id=tenant_id,
            collection_ids=query.collection_ids,
            limit=query.k if query.mode is not Mode.HYBRID else candidates_for(query.k),
            filters=query.filters,
        )

        async def keyword() -> list[Ranked]:
            if query.mode is Mode.VECTOR:
                return []
            async with self._sessions() as session, session.begin():
                await store.enter_tenant(session=session, tenant_id=tenant_id)
                return await self.keyword_leg(session=session, scope=scope, text=query.text)

        degraded: list[str] = []

        async def vector(until_answered: contextlib.AsyncExitStack) -> list[Ranked]:
            if query.mode is Mode.KEYWORD:
                return []
            # Embedded before the transaction opens: an embedder may be a network call. The
            # embedding is recorded while the search goes on (vectors.py).
            try:
                embedding = await until_answered.enter_async_context(
                    self._vectors.for_query(
                        tenant_id=tenant_id, collection_ids=query.collection_ids, text=query.text, billed_to=billed_to
                    )
                )
            except Unavailable as down:
                if query.mode is not Mode.HYBRID:
                    raise
                log.warning("hybrid search answered by keyword alone: %s", down)
                degraded.append(VECTOR_LEG)
                return []
            async with self._sessions() as session, session.begin():
                await store.enter_tenant(session=session, tenant_id=tenant_id)
                return await self.vector_leg(
                    session=session, scope=scope, embedding=embedding, ef_search=max(self._ef_search, scope.limit)
                )

        async with contextlib.AsyncExitStack() as until_answered:
            # The legs on two connections at once: a hybrid search waits for the slower, not for
            # both (and the query's embedding overlaps the keyword leg).
            keyword_hits, vector_hits = await asyncio.gather(keyword(), vector(until_answered))
            match query.mode:
                case Mode.KEYWORD:
                    hits = keyword_hits
                case Mode.VECTOR:
                    hits = vector_hits
                case Mode.HYBRID:
                    hits = fuse(keyword_hits, vector_hits, keyword_weight=self._keyword_weight, limit=query.k)
            if not hits:
                return Found([], tuple(degraded))
            # The chunks themselves are read once, for these hits only, with their passages.
            async with self._sessions() as session, session.begin():
                await store.enter_tenant(session=session, tenant_id=tenant_id)
                found = await store.hits_with_passages(
                    session=session, tenant_id=tenant_id, ranked=hits, query=query.text
                )
        return Found([replace(hit, highlight=marked(hit.highlight)) for hit in found], tuple(degraded))

    async def keyword_leg(self, *, session: AsyncSession, scope: SearchScope, text: str) -> list[Ranked]:
        """The chunks containing any of the query's words, best BM25 score first: exact, from the
        postings in memory (keyword_index.py) when the collections' copies are ready; else from
        PostgreSQL's, candidates rescored exactly, read deeper while a chunk left unscored could
        still beat the last hit (bm25.py), at most `bm25.rounds` times."""
        if self._keyword_index is not None:
            hits = await self._keyword_index.search(session=session, scope=scope, text=text, bm25=self._bm25)
            if hits is not None:
                return hits
        per_term = candidates_per_term(self._bm25, scope.limit)
        exact = rescored(self._bm25, scope.limit)
        for round_ in range(1, self._bm25.rounds + 1):
            found = await store.keyword_search(
                session=session, scope=scope, query=text, bm25=self._bm25, per_term=per_term, rescored=exact
            )
            if per_term is None or round_ == self._bm25.rounds or found.certain(scope.limit):
                break
            per_term, exact = per_term * DEEPER, exact * DEEPER
        return found.hits

    async def vector_leg(
        self, *, session: AsyncSession, scope: SearchScope, embedding: QueryVector | None, ef_search: int
    ) -> list[Ranked]:
        """The chunks nearest the query's embedding, nearest first; none for a query with no words."""
        if embedding is None or is_zero(embedding.embedding):
            return []
        return await store.vector_search(
            session=session,
            scope=scope,
            embedding=embedding.embedding,
            model=embedding.model,
            dimensions=embedding.dimensions,
            ef_search=ef_search,
        )

    async def neighbours(
        self, *, tenant_id: str, document_id: str, ordinal: int, before: int, after: int
    ) -> list[StoredChunk]:
        """The document's chunks from `before` positions ahead of `ordinal` to `after` past it."""
        if ordinal < 0 or before < 0 or after < 0:
            raise InvalidInput("ordinal, before and after must not be negative")
        if not document_id:
            raise InvalidInput("document_id is required")
        before, after = min(before, MAX_NEIGHBOURS), min(after, MAX_NEIGHBOURS)
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            if not await store.document_is_indexed(session=session, tenant_id=tenant_id, document_id=document_id):
                raise NotFound(f"document {document_id} is not in the index")
            return await store.chunks_between(
                session=session,
                tenant_id=tenant_id,
                document_id=document_id,
                first=ordinal - before,
                last=ordinal + after,
            )

    async def chunks_by_id(self, *, tenant_id: str, chunk_ids: Sequence[str]) -> list[StoredChunk]:
        """The chunks that exist for this tenant, in the order asked; unknown ids are left out, since
        a chunk id from a superseded version is expected to disappear."""
        wanted = _distinct(chunk_ids)
        if len(wanted) > MAX_CHUNK_IDS:
            raise InvalidInput(f"at most {MAX_CHUNK_IDS} chunk ids per call")
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            found = {
                chunk.chunk_id: chunk
                for chunk in await store.chunks_by_id(session=session, tenant_id=tenant_id, chunk_ids=wanted)
            }
        return [found[chunk_id] for chunk_id in wanted if chunk_id in found]


def marked(passage: str) -> str:
    """A passage as safe HTML: its text escaped, the words that matched the query in <mark></mark>."""
    return html.escape(passage, quote=False).replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


def _distinct(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value for value in values if value))
