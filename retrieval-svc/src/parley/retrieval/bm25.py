"""Keyword ranking by BM25, from term statistics kept in PostgreSQL.

Why not `ts_rank`: it has no IDF and no length normalisation tuned like BM25's, and
`websearch_to_tsquery` requires every word; on Cranfield that lexical leg scored far below BM25
and dragged hybrid search under vector search alone. Why not a library index in memory: the
index must follow every upsert and delete across replicas, in the same transaction as the chunks.

The analyzer is PostgreSQL's own `english` text search configuration (`to_tsvector`): lowercase,
the English stop words, Snowball English stemming. Chunks and queries go through the same one,
so the two can never drift apart, and a chunk is analysed where it is stored.

Tables (in the service's schema):
- `bm25_collections`: one row per (tenant, collection): a compact key for the postings, the
  number of chunks with at least one term and the total of their lengths (for N and avgdl).
- `bm25_postings`: one row per (collection, term, chunk): the term's frequency in the chunk and
  the chunk's length (its number of terms after stop words), so scoring reads the index only.

A term's document frequency is not stored: scoring reads every posting of each query term
anyway, and counting them on the way is exact, costs nothing more, and leaves no hot counter rows
for concurrent indexing to fight over.

A search over several collections of a tenant treats them as one corpus: N, avgdl and each
term's df are summed over the chosen collections, so scores are comparable across them.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

K1 = 1.2
B = 0.75


@dataclass(frozen=True, slots=True)
class ChunkText:
    chunk_id: str
    text: str


@dataclass(frozen=True, slots=True)
class KeywordHit:
    chunk_id: str
    score: float


def ddl(schema: str) -> list[str]:
    """The tables and index, for the migration (statements in order)."""
    return [
        f"""CREATE TABLE {schema}.bm25_collections (
            collection_key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tenant_id text NOT NULL,
            collection_id text NOT NULL,
            chunk_count bigint NOT NULL DEFAULT 0,
            total_length bigint NOT NULL DEFAULT 0,
            UNIQUE (tenant_id, collection_id)
        )""",
        # INCLUDE: a query term's postings are read by an index-only scan, with no heap visit per chunk.
        f"""CREATE TABLE {schema}.bm25_postings (
            collection_key bigint NOT NULL REFERENCES {schema}.bm25_collections ON DELETE CASCADE,
            term text NOT NULL,
            chunk_id text NOT NULL,
            document_id text NOT NULL,
            tf integer NOT NULL,
            chunk_length integer NOT NULL,
            PRIMARY KEY (collection_key, term, chunk_id) INCLUDE (tf, chunk_length, document_id)
        )""",
        f"CREATE INDEX ix_bm25_postings_document ON {schema}.bm25_postings (collection_key, document_id)",
    ]


class Bm25Index:
    """Keeps the term statistics of a schema's chunks and ranks chunks for a query by BM25."""

    def __init__(self, *, schema: str = "retrieval", k1: float = K1, b: float = B) -> None:
        self._k1 = k1
        self._b = b
        self._collections = f"{schema}.bm25_collections"
        self._postings = f"{schema}.bm25_postings"

    async def analyse(self, *, session: AsyncSession, content: str) -> dict[str, int]:
        """The terms of a text and how often each occurs, as chunks and queries are indexed."""
        rows = await session.execute(
            text("SELECT lexeme, cardinality(positions) AS tf FROM unnest(to_tsvector('english', :text))"),
            {"text": content},
        )
        return {row.lexeme: row.tf for row in rows}

    async def replace_document(
        self,
        *,
        session: AsyncSession,
        tenant_id: str,
        collection_id: str,
        document_id: str,
        chunks: Sequence[ChunkText],
    ) -> None:
        """Make the document's postings those of `chunks` (none: the document is forgotten).
        Call it in the transaction that writes the chunks, so search never sees half of either."""
        await self.forget_document(session=session, tenant_id=tenant_id, document_id=document_id)
        if not chunks:
            return
        # The collection row is locked from here to commit: indexing of one collection is serialised
        # at this point, which keeps N and the total length exact.
        key = await session.scalar(
            text(
                f"INSERT INTO {self._collections} AS c (tenant_id, collection_id) VALUES (:tenant_id, :collection_id)"
                " ON CONFLICT (tenant_id, collection_id) DO UPDATE SET chunk_count = c.chunk_count"
                " RETURNING collection_key"
            ),
            {"tenant_id": tenant_id, "collection_id": collection_id},
        )
        await session.execute(
            text(
                f"""WITH analysed AS (
                    SELECT given.chunk_id, terms.lexeme AS term, cardinality(terms.positions) AS tf
                    FROM unnest(CAST(:chunk_ids AS text[]), CAST(:texts AS text[])) AS given(chunk_id, body),
                         unnest(to_tsvector('english', given.body)) AS terms
                ),
                lengths AS (SELECT chunk_id, sum(tf)::int AS chunk_length FROM analysed GROUP BY chunk_id),
                added AS (
                    INSERT INTO {self._postings} (collection_key, term, chunk_id, document_id, tf, chunk_length)
                    SELECT :key, analysed.term, analysed.chunk_id, :document_id, analysed.tf, lengths.chunk_length
                    FROM analysed JOIN lengths USING (chunk_id)
                )
                UPDATE {self._collections}
                SET chunk_count = chunk_count + (SELECT count(*) FROM lengths),
                    total_length = total_length + (SELECT coalesce(sum(chunk_length), 0) FROM lengths)
                WHERE collection_key = :key"""
            ),
            {
                "chunk_ids": [chunk.chunk_id for chunk in chunks],
                "texts": [chunk.text for chunk in chunks],
                "key": key,
                "document_id": document_id,
            },
        )

    async def forget_document(self, *, session: AsyncSession, tenant_id: str, document_id: str) -> None:
        await session.execute(
            text(
                f"""WITH gone AS (
                    DELETE FROM {self._postings} AS p USING {self._collections} AS c
                    WHERE c.tenant_id = :tenant_id AND p.collection_key = c.collection_key
                      AND p.document_id = :document_id
                    RETURNING p.collection_key, p.chunk_id, p.chunk_length
                ),
                chunks AS (SELECT DISTINCT collection_key, chunk_id, chunk_length FROM gone),
                totals AS (
                    SELECT collection_key, count(*) AS chunk_count, sum(chunk_length) AS total_length
                    FROM chunks GROUP BY collection_key
                )
                UPDATE {self._collections} AS c
                SET chunk_count = c.chunk_count - totals.chunk_count,
                    total_length = c.total_length - totals.total_length
                FROM totals WHERE c.collection_key = totals.collection_key"""
            ),
            {"tenant_id": tenant_id, "document_id": document_id},
        )

    async def forget_collection(self, *, session: AsyncSession, tenant_id: str, collection_id: str) -> None:
        # The postings go with their collection row (ON DELETE CASCADE).
        await session.execute(
            text(f"DELETE FROM {self._collections} WHERE tenant_id = :tenant_id AND collection_id = :collection_id"),
            {"tenant_id": tenant_id, "collection_id": collection_id},
        )

    async def search(
        self,
        *,
        session: AsyncSession,
        tenant_id: str,
        collection_ids: Sequence[str],
        query: str,
        limit: int,
        document_ids: Sequence[str] = (),
    ) -> list[KeywordHit]:
        """Chunks containing any of the query's terms, best BM25 score first (ties by chunk id)."""
        # df is counted before the document filter: a term's rarity is a property of the corpus,
        # not of the few documents a caller narrowed the search to.
        rows = await session.execute(
            text(
                f"""WITH query_terms AS (
                    SELECT DISTINCT lexeme AS term FROM unnest(to_tsvector('english', :query))
                ),
                scope AS (
                    SELECT collection_key, chunk_count, total_length FROM {self._collections}
                    WHERE tenant_id = :tenant_id AND collection_id = ANY(CAST(:collection_ids AS text[]))
                ),
                corpus AS (
                    SELECT sum(chunk_count)::float8 AS n,
                           sum(total_length)::float8 / nullif(sum(chunk_count), 0) AS avgdl
                    FROM scope
                ),
                parameters AS (SELECT CAST(:k1 AS float8) AS k1, CAST(:b AS float8) AS b),
                postings AS (
                    SELECT p.chunk_id, p.document_id, p.tf, p.chunk_length,
                           count(*) OVER (PARTITION BY p.term) AS df
                    FROM {self._postings} AS p
                    JOIN scope USING (collection_key)
                    JOIN query_terms USING (term)
                )
                SELECT chunk_id,
                       sum(
                           ln(1 + (corpus.n - df + 0.5) / (df + 0.5))
                           * tf * (k1 + 1) / (tf + k1 * (1 - b + b * chunk_length / corpus.avgdl))
                       ) AS score
                FROM postings CROSS JOIN corpus CROSS JOIN parameters
                WHERE cardinality(CAST(:document_ids AS text[])) = 0
                   OR document_id = ANY(CAST(:document_ids AS text[]))
                GROUP BY chunk_id
                ORDER BY score DESC, chunk_id
                LIMIT :limit"""
            ),
            {
                "query": query,
                "tenant_id": tenant_id,
                "collection_ids": list(collection_ids),
                "document_ids": list(document_ids),
                "k1": self._k1,
                "b": self._b,
                "limit": limit,
            },
        )
        return [KeywordHit(chunk_id=row.chunk_id, score=float(row.score)) for row in rows]
