"""All SQL of the retrieval service. Every query about tenant data filters on tenant_id, and runs
in a transaction that `enter_tenant` has given to that tenant (row-level security, migration 0003)."""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, cast

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    CursorResult,
    Result,
    RowMapping,
    Text,
    and_,
    any_,
    bindparam,
    delete,
    exists,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from parley.kit import db
from parley.retrieval.bm25 import Bm25Parameters
from parley.retrieval.models import (
    bm25_collections,
    bm25_document_changes,
    bm25_postings,
    bm25_terms,
    chunk_embeddings,
    chunks,
    deleted_collections,
    embedding_cache,
    indexed_documents,
    upsert_parts,
)


@dataclass(frozen=True, slots=True)
class StoredChunk:
    chunk_id: str
    document_id: str
    collection_id: str
    document_title: str
    ordinal: int
    heading: str
    text: str
    token_count: int
    scene_number: str = ""
    characters: Sequence[str] = ()
    page_start: int = 0
    page_end: int = 0
    score: float = 0.0
    highlight: str = ""


@dataclass(frozen=True, slots=True)
class Ranked:
    """A chunk a search leg ranked, by its score there; the chunk itself is read once, for the
    search's final hits only (hits_with_passages)."""

    chunk_id: str
    score: float


@dataclass(frozen=True, slots=True)
class NewChunk:
    chunk_id: str
    ordinal: int
    heading: str
    text: str
    token_count: int
    content_hash: str
    scene_number: str
    characters: Sequence[str]
    page_start: int
    page_end: int


@dataclass(frozen=True, slots=True)
class StaleChunk:
    """A chunk without a vector of the model being made."""

    chunk_id: str
    tenant_id: str
    heading: str
    text: str


@dataclass(frozen=True, slots=True)
class DocumentKey:
    tenant_id: str
    collection_id: str
    document_id: str


@dataclass(frozen=True, slots=True)
class ChunkText:
    chunk_id: str
    heading: str
    text: str


@dataclass(frozen=True, slots=True)
class ChunkFilters:
    """Which chunks a search may return; named as the SearchFilters message (grpc_api copies it by name)."""

    document_ids: Sequence[str] = ()
    # A substring of the chunk's heading, matched case-insensitively; empty matches every chunk.
    heading: str = ""
    # Chunks of any of these scenes; empty: every chunk.
    scene_numbers: Sequence[str] = ()
    # Chunks whose scene has every one of these characters speaking; empty: every chunk.
    characters: Sequence[str] = ()
    # Chunks on a page in [page_from, page_to]; 0 leaves that end open, and a chunk without
    # pages is outside any page range.
    page_from: int = 0
    page_to: int = 0

    @property
    def narrows_chunks(self) -> bool:
        """Whether it filters on what only the chunk rows hold (postings carry no headings or scenes)."""
        return bool(self.heading or self.scene_numbers or self.characters or self.page_from or self.page_to)


NO_FILTERS = ChunkFilters()


@dataclass(frozen=True, slots=True)
class SearchScope:
    """Which chunks one search leg may return, and how many."""

    tenant_id: str
    collection_ids: Sequence[str]
    limit: int
    filters: ChunkFilters = NO_FILTERS


# A StoredChunk's fields are columns of `chunks`, except the score and highlight a search computes.
_HIT_FIELDS = tuple(field.name for field in fields(StoredChunk) if field.name not in {"score", "highlight"})
_HIT_COLUMNS = tuple(chunks.c[name] for name in _HIT_FIELDS)

# Control characters no document text carries (ingestion extracts text): the domain turns them
# into the public markers after escaping the text around them.
MARK_START = "\x02"
MARK_END = "\x03"
_HEADLINE_OPTIONS = f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=40, MinWords=15, MaxFragments=2"


_COLLECTIONS = f"{bm25_collections.schema}.{bm25_collections.name}"
_TERMS = f"{bm25_terms.schema}.{bm25_terms.name}"
_POSTINGS = f"{bm25_postings.schema}.{bm25_postings.name}"


def _hit(row: RowMapping, score: float = 0.0) -> StoredChunk:
    return StoredChunk(**{name: row[name] for name in _HIT_FIELDS}, score=float(score))


def _rowcount(result: Result[Any]) -> int:
    # AsyncSession.execute is typed for any statement; a DELETE's result is a CursorResult.
    return cast(CursorResult[Any], result).rowcount


# The role of migration 0003's policies: no login, no BYPASSRLS, not the tables' owner.
TENANT_ROLE = "parley_retrieval_tenant"


async def enter_tenant(*, session: AsyncSession, tenant_id: str) -> None:
    """Give the rest of this transaction to one tenant: PostgreSQL then hides every other tenant's
    rows, whatever a query's WHERE says. First thing in every transaction on tenant data."""
    await db.enter_tenant(session, role=TENANT_ROLE, tenant_id=tenant_id)


# --- indexing ---------------------------------------------------------------------------------


async def commit_without_flush(session: AsyncSession) -> None:
    """Let this transaction's commit return before its WAL reaches the disk: it survives this
    process dying, and is lost only if PostgreSQL's host fails within wal_writer_delay (200 ms).
    For writes that cost nothing to lose, never for money."""
    await session.execute(text("SET LOCAL synchronous_commit = off"))


async def is_collection_deleted(*, session: AsyncSession, tenant_id: str, collection_id: str) -> bool:
    found = await session.execute(
        select(deleted_collections.c.collection_id).where(
            deleted_collections.c.tenant_id == tenant_id, deleted_collections.c.collection_id == collection_id
        )
    )
    return found.first() is not None


async def hold_upsert_part(
    *, session: AsyncSession, tenant_id: str, document_id: str, version: int, part: int, parts: int, payload: bytes
) -> list[bytes] | None:
    """Keep one part of a version's chunk set (a redelivered part is kept once); every part's
    payload, in order, once all `parts` are held, else None."""
    # One part of a document at a time: two parts held at once would each miss the other's row and
    # neither would see the version whole.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"upsert:{tenant_id}:{document_id}"}
    )
    await session.execute(
        insert(upsert_parts)
        .values(tenant_id=tenant_id, document_id=document_id, version=version, part=part, parts=parts, payload=payload)
        .on_conflict_do_nothing()
    )
    of_version = (
        upsert_parts.c.tenant_id == tenant_id,
        upsert_parts.c.document_id == document_id,
        upsert_parts.c.version == version,
    )
    # Counted first: the payloads (megabytes each) are read once, when the version is whole.
    held = (await session.execute(select(func.count()).select_from(upsert_parts).where(*of_version))).scalar_one()
    if held < parts:
        return None
    payloads = await session.execute(select(upsert_parts.c.payload).where(*of_version).order_by(upsert_parts.c.part))
    return list(payloads.scalars())


async def drop_upsert_parts(*, session: AsyncSession, tenant_id: str, document_id: str, through_version: int) -> None:
    """The held parts of this version and of any older one: indexed, or superseded."""
    await session.execute(
        delete(upsert_parts).where(
            upsert_parts.c.tenant_id == tenant_id,
            upsert_parts.c.document_id == document_id,
            upsert_parts.c.version <= through_version,
        )
    )


async def claim_document_version(
    *, session: AsyncSession, tenant_id: str, document_id: str, collection_id: str, version: int
) -> bool:
    """Record `version` as the one indexed, if it is newer than what is held and the document is
    not deleted. True means the caller now holds the row lock and must replace the chunks."""
    statement = (
        insert(indexed_documents)
        .values(tenant_id=tenant_id, document_id=document_id, collection_id=collection_id, version=version)
        .on_conflict_do_update(
            index_elements=[indexed_documents.c.tenant_id, indexed_documents.c.document_id],
            set_={"version": version, "collection_id": collection_id, "updated_at": func.now()},
            where=and_(indexed_documents.c.version < version, indexed_documents.c.deleted.is_(False)),
        )
        .returning(indexed_documents.c.document_id)
    )
    return (await session.execute(statement)).first() is not None


async def is_newer_version(*, session: AsyncSession, tenant_id: str, document_id: str, version: int) -> bool:
    """Whether claim_document_version would claim `version` now (a read: nothing is locked)."""
    held = (
        await session.execute(
            select(indexed_documents.c.version, indexed_documents.c.deleted).where(
                indexed_documents.c.tenant_id == tenant_id, indexed_documents.c.document_id == document_id
            )
        )
    ).first()
    return held is None or (held.version < version and not held.deleted)


async def replace_document_chunks(
    *,
    session: AsyncSession,
    tenant_id: str,
    collection_id: str,
    document_id: str,
    version: int,
    document_title: str,
    new_chunks: Sequence[NewChunk],
) -> None:
    await session.execute(delete(chunks).where(chunks.c.tenant_id == tenant_id, chunks.c.document_id == document_id))
    if not new_chunks:
        return
    document = {
        "tenant_id": tenant_id,
        "collection_id": collection_id,
        "document_id": document_id,
        "version": version,
        "document_title": document_title,
    }
    await session.execute(
        insert(chunks),
        [
            {
                **document,
                **{field.name: getattr(chunk, field.name) for field in fields(NewChunk)},
                "characters": list(chunk.characters),
            }
            for chunk in new_chunks
        ],
    )


async def delete_document(*, session: AsyncSession, tenant_id: str, collection_id: str, document_id: str) -> int:
    """Drop the document's chunks and leave a tombstone; returns the number of chunks removed."""
    await session.execute(
        insert(indexed_documents)
        .values(tenant_id=tenant_id, document_id=document_id, collection_id=collection_id, version=0, deleted=True)
        .on_conflict_do_update(
            index_elements=[indexed_documents.c.tenant_id, indexed_documents.c.document_id],
            set_={"deleted": True, "updated_at": func.now()},
        )
    )
    return _rowcount(
        await session.execute(
            delete(chunks).where(chunks.c.tenant_id == tenant_id, chunks.c.document_id == document_id)
        )
    )


async def delete_collection(*, session: AsyncSession, tenant_id: str, collection_id: str) -> int:
    await session.execute(
        insert(deleted_collections)
        .values(tenant_id=tenant_id, collection_id=collection_id)
        .on_conflict_do_nothing(index_elements=[deleted_collections.c.tenant_id, deleted_collections.c.collection_id])
    )
    # Waits for an upsert of this collection's documents that is in flight, so its chunks are
    # committed (and seen by the delete below) rather than left behind.
    await session.execute(
        update(indexed_documents)
        .where(indexed_documents.c.tenant_id == tenant_id, indexed_documents.c.collection_id == collection_id)
        .values(deleted=True, updated_at=func.now())
    )
    return _rowcount(
        await session.execute(
            delete(chunks).where(chunks.c.tenant_id == tenant_id, chunks.c.collection_id == collection_id)
        )
    )


# BM25's statistics (the design is in bm25.py). Every write locks the collection's row first: the
# counters stay exact, and concurrent documents of one collection cannot deadlock.


async def replace_postings(
    *,
    session: AsyncSession,
    tenant_id: str,
    collection_id: str,
    document_id: str,
    texts: Mapping[str, str],
    bm25: Bm25Parameters,
) -> None:
    """Make the document's postings those of `texts` (chunk id → analysed text; none: forgotten).
    Call it in the transaction that writes the chunks, so search never sees half of either."""
    key = await _forget_postings(
        session=session, tenant_id=tenant_id, collection_id=collection_id, document_id=document_id
    )
    if not texts:
        return
    await session.execute(
        text(
            f"""WITH analysed AS (
                SELECT given.chunk_id, terms.lexeme AS term, cardinality(terms.positions) AS tf
                FROM unnest(CAST(:chunk_ids AS text[]), CAST(:texts AS text[])) AS given(chunk_id, body),
                     unnest(to_tsvector('english', given.body)) AS terms
            ),
            lengths AS (SELECT chunk_id, sum(tf)::int AS chunk_length FROM analysed GROUP BY chunk_id),
            collection AS (
                UPDATE {_COLLECTIONS}
                SET chunk_count = chunk_count + (SELECT count(*) FROM lengths),
                    total_length = total_length + (SELECT coalesce(sum(chunk_length), 0) FROM lengths)
                WHERE collection_key = :key
                RETURNING total_length::float8 / nullif(chunk_count, 0) AS avgdl
            ),
            counted AS (
                INSERT INTO {_TERMS} AS t (collection_key, term, df)
                SELECT :key, term, count(*) FROM analysed GROUP BY term ORDER BY term
                ON CONFLICT (collection_key, term) DO UPDATE SET df = t.df + excluded.df
            )
            INSERT INTO {_POSTINGS} (collection_key, term, chunk_id, document_id, tf, chunk_length, impact)
            SELECT :key, analysed.term, analysed.chunk_id, :document_id, analysed.tf, lengths.chunk_length,
                   analysed.tf * (:k1 + 1)
                   / (analysed.tf + :k1 * (1 - :b + :b * lengths.chunk_length / collection.avgdl))
            FROM analysed JOIN lengths USING (chunk_id) CROSS JOIN collection"""
        ),
        {
            "chunk_ids": list(texts),
            "texts": list(texts.values()),
            "key": key,
            "document_id": document_id,
            "k1": bm25.k1,
            "b": bm25.b,
        },
    )


async def forget_document_postings(
    *, session: AsyncSession, tenant_id: str, collection_id: str, document_id: str
) -> None:
    await _forget_postings(session=session, tenant_id=tenant_id, collection_id=collection_id, document_id=document_id)


async def forget_collection_postings(*, session: AsyncSession, tenant_id: str, collection_id: str) -> None:
    # Its terms and postings go with the collection row (ON DELETE CASCADE).
    await session.execute(
        delete(bm25_collections).where(
            bm25_collections.c.tenant_id == tenant_id, bm25_collections.c.collection_id == collection_id
        )
    )


async def _forget_postings(*, session: AsyncSession, tenant_id: str, collection_id: str, document_id: str) -> int:
    """Remove the document's postings from its collection's, first locking the collection's row
    and moving it to its next generation, with the document noted as changed in it (for the
    in-memory copies, keyword_index.py). The collection's key."""
    statement = (
        insert(bm25_collections)
        .values(tenant_id=tenant_id, collection_id=collection_id, generation=1)
        .on_conflict_do_update(
            constraint="uq_bm25_collections_tenant_collection",
            set_={"generation": bm25_collections.c.generation + 1},
        )
        .returning(bm25_collections.c.collection_key, bm25_collections.c.generation)
    )
    # INSERT .. ON CONFLICT DO UPDATE .. RETURNING always returns the row, now locked.
    key, generation = (await session.execute(statement)).one()
    changed = insert(bm25_document_changes).values(collection_key=key, document_id=document_id, generation=generation)
    await session.execute(
        changed.on_conflict_do_update(
            index_elements=[bm25_document_changes.c.collection_key, bm25_document_changes.c.document_id],
            set_={"generation": changed.excluded.generation},
        )
    )
    await session.execute(
        text(
            f"""WITH gone AS (
                DELETE FROM {_POSTINGS}
                WHERE collection_key = :key AND document_id = :document_id
                RETURNING term, chunk_id, chunk_length
            ),
            uncounted AS (
                UPDATE {_TERMS} AS t SET df = t.df - gone_terms.df
                FROM (SELECT term, count(*) AS df FROM gone GROUP BY term) AS gone_terms
                WHERE t.collection_key = :key AND t.term = gone_terms.term
            ),
            gone_chunks AS (SELECT DISTINCT chunk_id, chunk_length FROM gone)
            UPDATE {_COLLECTIONS}
            SET chunk_count = chunk_count - (SELECT count(*) FROM gone_chunks),
                total_length = total_length - (SELECT coalesce(sum(chunk_length), 0) FROM gone_chunks)
            WHERE collection_key = :key"""
        ),
        {"key": key, "document_id": document_id},
    )
    return int(key)


async def documents_without_postings(*, session: AsyncSession) -> list[DocumentKey]:
    """Documents, of any tenant, with chunks but no BM25 postings: indexed before postings existed
    (migration 0002), or only chunks without a word. Postings are written a whole document at a
    time, so a document with any has them all."""
    rows = await session.execute(
        text(
            f"""SELECT DISTINCT c.tenant_id, c.collection_id, c.document_id
            FROM {chunks.schema}.{chunks.name} AS c
            WHERE NOT EXISTS (
                SELECT FROM {_COLLECTIONS} AS bc JOIN {_POSTINGS} AS p USING (collection_key)
                WHERE bc.tenant_id = c.tenant_id AND bc.collection_id = c.collection_id
                  AND p.document_id = c.document_id
            )
            ORDER BY c.tenant_id, c.document_id"""
        )
    )
    return [
        DocumentKey(tenant_id=row.tenant_id, collection_id=row.collection_id, document_id=row.document_id)
        for row in rows
    ]


async def lock_indexed_document(*, session: AsyncSession, tenant_id: str, document_id: str) -> bool:
    """Hold the document's row until the transaction ends, as an upsert of it does; False when it
    is deleted or unknown. After it, this transaction sees the document's latest committed chunks."""
    found = await session.execute(
        select(indexed_documents.c.document_id)
        .where(
            indexed_documents.c.tenant_id == tenant_id,
            indexed_documents.c.document_id == document_id,
            indexed_documents.c.deleted.is_(False),
        )
        .with_for_update()
    )
    return found.first() is not None


async def has_postings(*, session: AsyncSession, tenant_id: str, collection_id: str, document_id: str) -> bool:
    found = await session.execute(
        select(bm25_postings.c.chunk_id)
        .join(bm25_collections, bm25_collections.c.collection_key == bm25_postings.c.collection_key)
        .where(
            bm25_collections.c.tenant_id == tenant_id,
            bm25_collections.c.collection_id == collection_id,
            bm25_postings.c.document_id == document_id,
        )
        .limit(1)
    )
    return found.first() is not None


async def document_chunk_texts(*, session: AsyncSession, tenant_id: str, document_id: str) -> list[ChunkText]:
    rows = await session.execute(
        select(chunks.c.chunk_id, chunks.c.heading, chunks.c.text)
        .where(chunks.c.tenant_id == tenant_id, chunks.c.document_id == document_id)
        .order_by(chunks.c.ordinal)
    )
    return [ChunkText(chunk_id=row.chunk_id, heading=row.heading, text=row.text) for row in rows]


async def analyse(*, session: AsyncSession, content: str) -> dict[str, int]:
    """The terms of a text and how often each occurs, as chunks and queries are analysed for BM25."""
    rows = await session.execute(
        text("SELECT lexeme, cardinality(positions) AS tf FROM unnest(to_tsvector('english', :text))"),
        {"text": content},
    )
    return {row.lexeme: row.tf for row in rows}


async def cached_embeddings(
    *, session: AsyncSession, model: str, content_hashes: Sequence[str]
) -> dict[str, list[float]]:
    if not content_hashes:
        return {}
    # One array parameter, not an IN list: a document of more than 65,535 chunks would pass
    # PostgreSQL's limit on a statement's parameters (and it did: such a document was parked).
    hashes = bindparam("content_hashes", sorted(set(content_hashes)), type_=ARRAY(Text))
    rows = await session.execute(
        select(embedding_cache.c.content_hash, embedding_cache.c.embedding).where(
            embedding_cache.c.model == model, embedding_cache.c.content_hash == any_(hashes)
        )
    )
    return {row.content_hash: list(row.embedding) for row in rows}


async def cache_embeddings(*, session: AsyncSession, model: str, embeddings: Mapping[str, list[float]]) -> None:
    if not embeddings:
        return
    await session.execute(
        insert(embedding_cache).on_conflict_do_nothing(
            index_elements=[embedding_cache.c.model, embedding_cache.c.content_hash]
        ),
        # In key order: two documents sharing texts then wait on each other's keys in one order, never in a cycle.
        [{"model": model, "content_hash": key, "embedding": value} for key, value in sorted(embeddings.items())],
    )


# --- vectors, per model (models.chunk_embeddings) -------------------------------------------------


async def add_vectors(
    *, session: AsyncSession, tenant_id: str, model: str, vectors: Mapping[str, list[float] | None]
) -> None:
    """Chunk id → its vector from `model` (None: the chunk has no words to embed). Chunks written
    in this transaction; a vector they already have from `model` is kept."""
    if not vectors:
        return
    # Rows as parameters (executemany, batched by SQLAlchemy): one VALUES list of a large
    # document's vectors would pass PostgreSQL's 65,535 parameters.
    await session.execute(
        insert(chunk_embeddings).on_conflict_do_nothing(
            index_elements=[chunk_embeddings.c.chunk_id, chunk_embeddings.c.model]
        ),
        [
            {"chunk_id": chunk_id, "model": model, "tenant_id": tenant_id, "embedding": vector}
            for chunk_id, vector in vectors.items()
        ],
    )


async def add_vector_if_chunk_exists(
    *, session: AsyncSession, chunk_id: str, model: str, embedding: list[float] | None
) -> None:
    """A re-made vector of a chunk that may have been deleted (or given it) since it was read."""
    await session.execute(
        insert(chunk_embeddings)
        .from_select(
            ["chunk_id", "model", "tenant_id", "embedding"],
            select(
                chunks.c.chunk_id,
                literal(model, Text),
                chunks.c.tenant_id,
                literal(embedding, Vector()),
            ).where(chunks.c.chunk_id == chunk_id),
        )
        .on_conflict_do_nothing(index_elements=[chunk_embeddings.c.chunk_id, chunk_embeddings.c.model])
    )


async def stale_chunks(*, session: AsyncSession, model: str, after: str, limit: int) -> list[StaleChunk]:
    """Chunks, of any tenant, without a vector of `model`, in chunk id order from past `after`."""
    rows = await session.execute(
        select(chunks.c.chunk_id, chunks.c.tenant_id, chunks.c.heading, chunks.c.text)
        .where(
            chunks.c.chunk_id > after,
            ~exists().where(chunk_embeddings.c.chunk_id == chunks.c.chunk_id, chunk_embeddings.c.model == model),
        )
        .order_by(chunks.c.chunk_id)
        .limit(limit)
    )
    return [
        StaleChunk(chunk_id=row.chunk_id, tenant_id=row.tenant_id, heading=row.heading, text=row.text) for row in rows
    ]


async def stored_models(*, session: AsyncSession) -> list[str]:
    """Every model that has vectors in the index, of any tenant."""
    # A loose index scan over the primary key's second column would need a recursive query; this
    # runs once at start.
    return list((await session.execute(select(chunk_embeddings.c.model).distinct())).scalars())


async def models_covering(
    *, session: AsyncSession, tenant_id: str, collection_ids: Sequence[str], models: Sequence[str]
) -> set[str]:
    """Those of `models` that have a vector for every chunk of the collections."""
    rows = await session.execute(
        text(
            f"""SELECT m.model FROM unnest(CAST(:models AS text[])) AS m(model)
            WHERE NOT EXISTS (
                SELECT FROM {chunks.schema}.{chunks.name} AS c
                WHERE c.tenant_id = :tenant_id AND c.collection_id = ANY(CAST(:collection_ids AS text[]))
                  AND NOT EXISTS (
                      SELECT FROM {chunk_embeddings.schema}.{chunk_embeddings.name} AS e
                      WHERE e.chunk_id = c.chunk_id AND e.model = m.model
                  )
            )"""
        ),
        {"models": list(models), "tenant_id": tenant_id, "collection_ids": list(collection_ids)},
    )
    return set(rows.scalars())


async def forget_vectors(*, session: AsyncSession, keep_model: str, after: str, limit: int) -> str | None:
    """Delete up to `limit` vectors of other models than `keep_model`, in chunk id order from past
    `after`; returns the last chunk id deleted (the next call's `after`), None when none was left."""
    doomed = (
        select(chunk_embeddings.c.chunk_id, chunk_embeddings.c.model)
        .where(chunk_embeddings.c.model != keep_model, chunk_embeddings.c.chunk_id > after)
        .order_by(chunk_embeddings.c.chunk_id)
        .limit(limit)
        .cte("doomed")
    )
    deleted = await session.execute(
        delete(chunk_embeddings)
        .where(chunk_embeddings.c.chunk_id == doomed.c.chunk_id, chunk_embeddings.c.model == doomed.c.model)
        .returning(chunk_embeddings.c.chunk_id)
    )
    return max(deleted.scalars(), default=None)


def vector_index_name(model: str) -> str:
    """The name of a model's HNSW index: readable, unique per model, within PostgreSQL's 63 bytes."""
    slug = "".join(character if character.isalnum() else "_" for character in model.lower())[:32]
    return f"ix_chunk_embeddings_{slug}_{hashlib.sha256(model.encode()).hexdigest()[:8]}"


async def ensure_vector_index(*, connection: AsyncConnection, model: str, dimensions: int) -> bool:
    """Create the model's partial HNSW index if it is missing (or a build of it was interrupted).
    `connection` must be in autocommit: CREATE INDEX CONCURRENTLY cannot run in a transaction, and
    is what lets indexing and search go on while it builds. False when another replica is
    building it right now."""
    name = vector_index_name(model)
    schema = chunk_embeddings.schema
    lock = {"key": f"vector-index:{name}"}
    # A session lock, not a transaction's: there is no transaction. Another replica holding it is
    # building this index; waiting for it would only hold up this one's start.
    if not await connection.scalar(text("SELECT pg_try_advisory_lock(hashtext(:key))"), lock):
        return False
    try:
        # An index build can take minutes on a large index; the pool's statement timeout is for queries.
        await connection.execute(text("SET statement_timeout = 0"))
        valid = await connection.scalar(
            text(
                "SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid"
                " JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relname = :name"
            ),
            {"schema": schema, "name": name},
        )
        if valid is False:  # left behind by a build that died: IF NOT EXISTS would keep it forever
            await connection.execute(text(f'DROP INDEX CONCURRENTLY IF EXISTS "{schema}"."{name}"'))
        quoted_model = model.replace("'", "''")
        await connection.execute(
            text(
                f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON "{schema}"."{chunk_embeddings.name}"'
                f" USING hnsw ((embedding::vector({int(dimensions)})) vector_cosine_ops)"
                f" WITH (m = 16, ef_construction = 64) WHERE model = '{quoted_model}'"
            )
        )
        return True
    finally:
        await connection.execute(text("RESET statement_timeout"))
        await connection.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), lock)


# --- reading ----------------------------------------------------------------------------------


def _in_scope(scope: SearchScope) -> ColumnElement[bool]:
    condition = and_(chunks.c.tenant_id == scope.tenant_id, chunks.c.collection_id.in_(list(scope.collection_ids)))
    filters = scope.filters
    if filters.document_ids:
        condition = and_(condition, chunks.c.document_id.in_(list(filters.document_ids)))
    if filters.heading:
        condition = and_(condition, func.strpos(func.lower(chunks.c.heading), func.lower(filters.heading)) > 0)
    if filters.scene_numbers:
        condition = and_(condition, chunks.c.scene_number.in_(list(filters.scene_numbers)))
    if filters.characters:
        condition = and_(condition, chunks.c.characters.contains(list(filters.characters)))
    if filters.page_from or filters.page_to:
        # Overlap of [page_start, page_end] with the range; a chunk with no pages (0) has none.
        condition = and_(condition, chunks.c.page_start > 0)
    if filters.page_from:
        condition = and_(condition, chunks.c.page_end >= filters.page_from)
    if filters.page_to:
        condition = and_(condition, chunks.c.page_start <= filters.page_to)
    return condition


# Any word of the query, analysed as BM25 analyses it, as a tsquery (empty when it has none).
_ANY_QUERY_WORD = (
    "(SELECT CAST(coalesce(string_agg(quote_literal(lexeme), ' | '), '') AS tsquery)"
    " FROM unnest(to_tsvector('english', :query)))"
)


@dataclass(frozen=True, slots=True)
class KeywordHits:
    hits: list[Ranked]
    # The highest score a chunk left unscored can have (bm25.py); 0 when every chunk holding a
    # query word was scored.
    unscored_bound: float

    def certain(self, limit: int) -> bool:
        """Whether these are the best `limit` chunks of the whole collection, not only of the candidates."""
        if not self.unscored_bound:
            return True
        return len(self.hits) >= limit and self.hits[limit - 1].score >= self.unscored_bound


def _postings_where(condition: str) -> str:
    """The `postings` CTE: every posting of the query's terms that meets `condition` (on `p`)."""
    return f"""
            postings AS (
                SELECT p.term, p.chunk_id, p.tf, p.chunk_length
                FROM scope CROSS JOIN query_terms
                CROSS JOIN LATERAL (
                    SELECT p.term, p.chunk_id, p.tf, p.chunk_length FROM {_POSTINGS} AS p
                    WHERE p.collection_key = scope.collection_key AND p.term = query_terms.term
                      AND {condition}
                ) AS p
            )"""


# Where a search's scored postings come from (bm25.py). Every posting of the query's terms: exact BM25.
_EVERY_POSTING = (
    _postings_where(
        "(cardinality(CAST(:document_ids AS text[])) = 0 OR p.document_id = ANY(CAST(:document_ids AS text[])))"
    )
    + """,
            unscored AS (SELECT 0.0::float8 AS score)"""
)
# Every posting of the query's terms in the candidates: their exact scores.
_CANDIDATES_POSTINGS = _postings_where("p.chunk_id = ANY(ARRAY(SELECT chunk_id FROM candidates))")
# The chunks a caller chose (by heading, scene, characters or pages) that hold a query word: all
# of them are scored.
_GIVEN_CANDIDATES = f"""
            candidates AS (SELECT unnest(CAST(:candidate_ids AS text[])) AS chunk_id),
            {_CANDIDATES_POSTINGS},
            unscored AS (SELECT 0.0::float8 AS score)"""
# Candidate generation and exact rescoring (bm25.py), in one statement:
# - best: each term's best postings by impact, an index-only scan stopping after :per_term rows;
#   terms cut short there are in cut_short (the others were read whole);
# - partial: each candidate's score from the postings read (a lower bound of its exact score), and
#   its upper bound: plus, per term cut short where it was not read, idf times the last impact read;
# - threshold: the :limit-th best partial score; a candidate whose upper bound is below it cannot
#   make the top :limit; of the others, the :rescored best by partial score are rescored: their
#   postings of the terms cut short looked up, one index descent per (term, candidate);
# - bound: what a chunk that is no candidate can score at most (its impacts keep the avgdl of
#   their writing, so the bound is as close as they are); unscored: that, or the upper bound of a
#   promising candidate left out, whichever is higher.
_BEST_CANDIDATES = f"""
            best AS (
                SELECT scope.collection_key, query_terms.term, p.chunk_id, p.tf, p.chunk_length, p.impact
                FROM scope CROSS JOIN query_terms
                CROSS JOIN LATERAL (
                    SELECT p.chunk_id, p.tf, p.chunk_length, p.impact FROM {_POSTINGS} AS p
                    WHERE p.collection_key = scope.collection_key AND p.term = query_terms.term
                      AND (cardinality(CAST(:document_ids AS text[])) = 0
                           OR p.document_id = ANY(CAST(:document_ids AS text[])))
                    ORDER BY p.impact DESC
                    LIMIT CAST(:per_term AS bigint)
                ) AS p
            ),
            cut_short AS (
                SELECT collection_key, term, min(impact) AS impact FROM best
                GROUP BY collection_key, term HAVING count(*) >= CAST(:per_term AS bigint)
            ),
            weights AS (
                SELECT term_stats.term, ln(1 + (n - df + 0.5) / (df + 0.5)) AS idf,
                       coalesce(cut.impact, 0.0) AS unread
                FROM term_stats CROSS JOIN corpus
                LEFT JOIN (SELECT term, max(impact) AS impact FROM cut_short GROUP BY term) AS cut USING (term)
            ),
            bound AS (SELECT coalesce(sum(idf * unread), 0.0)::float8 AS score FROM weights),
            partial AS (
                SELECT best.chunk_id,
                       sum(idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * chunk_length / avgdl))) AS score,
                       sum(idf * unread) AS unread_read
                FROM best JOIN weights USING (term) CROSS JOIN corpus
                GROUP BY best.chunk_id
            ),
            threshold AS (
                SELECT coalesce(
                    (SELECT score FROM partial ORDER BY score DESC OFFSET :limit - 1 LIMIT 1), 0.0
                ) AS score
            ),
            promising AS (
                SELECT chunk_id, score, score + (SELECT score FROM bound) - unread_read AS ceiling FROM partial
                WHERE score + (SELECT score FROM bound) - unread_read >= (SELECT score FROM threshold)
            ),
            candidates AS (
                SELECT chunk_id FROM promising ORDER BY score DESC, chunk_id LIMIT CAST(:rescored AS bigint)
            ),
            unscored AS (
                SELECT greatest(
                    (SELECT score FROM bound),
                    (SELECT max(ceiling) FROM promising
                     WHERE NOT EXISTS (SELECT FROM candidates WHERE candidates.chunk_id = promising.chunk_id))
                ) AS score
            ),
            postings AS (
                SELECT best.term, best.chunk_id, best.tf, best.chunk_length
                FROM best JOIN candidates USING (chunk_id)
                WHERE NOT EXISTS (
                    SELECT FROM cut_short
                    WHERE cut_short.collection_key = best.collection_key AND cut_short.term = best.term
                )
                UNION ALL
                SELECT p.term, p.chunk_id, p.tf, p.chunk_length
                FROM cut_short CROSS JOIN candidates
                CROSS JOIN LATERAL (
                    SELECT p.term, p.chunk_id, p.tf, p.chunk_length FROM {_POSTINGS} AS p
                    WHERE p.collection_key = cut_short.collection_key AND p.term = cut_short.term
                      AND p.chunk_id = candidates.chunk_id
                    -- At most one row; the LIMIT keeps this a descent per pair rather than a scan
                    -- of the term's every posting.
                    LIMIT 1
                ) AS p
            )"""


async def keyword_search(
    *,
    session: AsyncSession,
    scope: SearchScope,
    query: str,
    bm25: Bm25Parameters,
    per_term: int | None,
    rescored: int | None = None,
) -> KeywordHits:
    """Chunks containing any of the query's terms, best BM25 score first (ties by chunk id).

    Scores are exact BM25; the chunks scored are the candidates of bm25.py: of each term's
    `per_term` best postings (None: every posting), the `rescored` (None: all) most promising, or,
    under a filter on the chunks' own columns, every chunk of the filter holding a query word."""
    # N, avgdl and df are those of all the chosen collections together (scores stay comparable
    # across them), not of the few documents, headings or scenes a caller narrowed the search to.
    candidate_ids: list[str] | None = None
    if scope.filters.narrows_chunks:
        # A narrow filter is never starved by the best postings of chunks outside it.
        found = await session.execute(
            select(chunks.c.chunk_id).where(
                _in_scope(scope), chunks.c.tsv.bool_op("@@")(text(_ANY_QUERY_WORD).bindparams(query=query))
            )
        )
        candidate_ids = list(found.scalars())
        if not candidate_ids:
            return KeywordHits(hits=[], unscored_bound=0.0)
    if candidate_ids is not None:
        postings = _GIVEN_CANDIDATES
    elif per_term is None:
        postings = _EVERY_POSTING
    else:
        postings = _BEST_CANDIDATES
    rows = (
        await session.execute(
            text(
                f"""WITH query_terms AS (
                SELECT DISTINCT lexeme AS term FROM unnest(to_tsvector('english', :query))
            ),
            scope AS (
                SELECT collection_key, chunk_count, total_length FROM {_COLLECTIONS}
                WHERE tenant_id = :tenant_id AND collection_id = ANY(CAST(:collection_ids AS text[]))
            ),
            corpus AS (
                SELECT sum(chunk_count)::float8 AS n,
                       sum(total_length)::float8 / nullif(sum(chunk_count), 0) AS avgdl,
                       CAST(:k1 AS float8) AS k1, CAST(:b AS float8) AS b
                FROM scope
            ),
            term_stats AS (
                SELECT t.term, sum(t.df)::float8 AS df
                FROM {_TERMS} AS t JOIN scope USING (collection_key) JOIN query_terms USING (term)
                WHERE t.df > 0
                GROUP BY t.term
            ),
            {postings},
            scored AS (
                SELECT chunk_id,
                       sum(
                           ln(1 + (n - df + 0.5) / (df + 0.5))
                           * tf * (k1 + 1) / (tf + k1 * (1 - b + b * chunk_length / avgdl))
                       ) AS score
                FROM postings JOIN term_stats USING (term) CROSS JOIN corpus
                GROUP BY chunk_id
            )
            SELECT chunk_id, score, (SELECT score FROM unscored) AS unscored_bound
            FROM scored
            ORDER BY score DESC, chunk_id
            LIMIT :limit"""
            ),
            {
                "query": query,
                "tenant_id": scope.tenant_id,
                "collection_ids": list(scope.collection_ids),
                "document_ids": list(scope.filters.document_ids),
                "candidate_ids": candidate_ids,
                "k1": bm25.k1,
                "b": bm25.b,
                "per_term": per_term,
                "rescored": rescored,
                "limit": scope.limit,
            },
        )
    ).all()
    # No row: no chunk holds a query word (a term with postings always yields candidates).
    return KeywordHits(
        hits=[Ranked(chunk_id=row.chunk_id, score=float(row.score)) for row in rows],
        unscored_bound=float(rows[0].unscored_bound) if rows else 0.0,
    )


# --- the in-memory keyword index's reads (keyword_index.py) -----------------------------------


@dataclass(frozen=True, slots=True)
class PostingsCollection:
    """A collection's BM25 row as a search sees it."""

    collection_key: int
    generation: int
    chunk_count: int


@dataclass(frozen=True, slots=True)
class KeywordQuery:
    """A query's terms (analysed as chunks are) and the chosen collections that have postings."""

    terms: tuple[str, ...]
    collections: tuple[PostingsCollection, ...]


@dataclass(frozen=True, slots=True)
class PostingsChunk:
    chunk_id: str
    document_id: str
    length: int


@dataclass(frozen=True, slots=True)
class TermPostings:
    """One term's postings: (slot, tf) pairs of big-endian int4s, a slot being the chunk's
    position in its load's chunk list."""

    term: str
    pairs: bytes


@dataclass(frozen=True, slots=True)
class CollectionPostings:
    """A whole collection's postings as of `generation`."""

    generation: int
    chunks: list[PostingsChunk]
    terms: list[TermPostings]


@dataclass(frozen=True, slots=True)
class ChangedPosting:
    chunk: PostingsChunk
    term: str
    tf: int


@dataclass(frozen=True, slots=True)
class PostingsChanges:
    """The documents changed after a generation, up to `generation`, and their postings now
    (none for a document deleted, or emptied)."""

    generation: int
    document_ids: frozenset[str]
    postings: list[ChangedPosting]


async def keyword_query(
    *, session: AsyncSession, tenant_id: str, collection_ids: Sequence[str], query: str
) -> KeywordQuery:
    rows = (
        await session.execute(
            text(
                f"""SELECT q.terms, c.collection_key, c.generation, c.chunk_count
                FROM (
                    SELECT ARRAY(SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', :query)) ORDER BY 1) AS terms
                ) AS q
                LEFT JOIN {_COLLECTIONS} AS c
                    ON c.tenant_id = :tenant_id AND c.collection_id = ANY(CAST(:collection_ids AS text[]))
                ORDER BY c.collection_key"""
            ),
            {"query": query, "tenant_id": tenant_id, "collection_ids": list(collection_ids)},
        )
    ).all()
    return KeywordQuery(
        terms=tuple(rows[0].terms),
        collections=tuple(
            PostingsCollection(
                collection_key=int(row.collection_key), generation=int(row.generation), chunk_count=int(row.chunk_count)
            )
            for row in rows
            if row.collection_key is not None
        ),
    )


async def begin_snapshot(session: AsyncSession) -> None:
    """Make this transaction read one snapshot throughout (its first statement)."""
    await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))


async def postings_collections(*, session: AsyncSession) -> list[tuple[str, PostingsCollection]]:
    """Every tenant's collections with postings, largest first, with their tenant. Across tenants:
    the service's login role, outside row-level security."""
    rows = await session.execute(
        select(
            bm25_collections.c.tenant_id,
            bm25_collections.c.collection_key,
            bm25_collections.c.generation,
            bm25_collections.c.chunk_count,
        )
        .where(bm25_collections.c.chunk_count > 0)
        .order_by(bm25_collections.c.chunk_count.desc())
    )
    return [
        (
            row.tenant_id,
            PostingsCollection(
                collection_key=row.collection_key, generation=row.generation, chunk_count=row.chunk_count
            ),
        )
        for row in rows
    ]


async def _generation(*, session: AsyncSession, collection_key: int) -> int | None:
    found = await session.execute(
        select(bm25_collections.c.generation).where(bm25_collections.c.collection_key == collection_key)
    )
    return found.scalar_one_or_none()


async def collection_postings(*, session: AsyncSession, collection_key: int) -> CollectionPostings | None:
    """The collection's every posting (None when it is gone). Call it in a snapshot (begin_snapshot):
    it reads in several statements."""
    generation = await _generation(session=session, collection_key=collection_key)
    if generation is None:
        return None
    # Sorts and hashes of a whole collection's postings in memory rather than spilled to disk
    # (22 s against 7 s for 100k chunks' 7M postings).
    await session.execute(text("SET LOCAL work_mem = '256MB'"))
    chunk_rows = (
        await session.execute(
            text(
                f"""SELECT chunk_id, min(document_id) AS document_id, min(chunk_length) AS length
                FROM {_POSTINGS} WHERE collection_key = :key GROUP BY chunk_id"""
            ),
            {"key": collection_key},
        )
    ).all()
    # Each term's postings as one byte string, so millions of them arrive as a few thousand values;
    # a chunk's slot is its position in chunk_rows.
    term_rows = await session.execute(
        text(
            f"""SELECT p.term, string_agg(int4send(s.slot::int4) || int4send(p.tf), ''::bytea) AS pairs
            FROM {_POSTINGS} AS p
            JOIN unnest(CAST(:chunk_ids AS text[])) WITH ORDINALITY AS s(chunk_id, slot) USING (chunk_id)
            WHERE p.collection_key = :key
            GROUP BY p.term"""
        ),
        {"key": collection_key, "chunk_ids": [row.chunk_id for row in chunk_rows]},
    )
    return CollectionPostings(
        generation=int(generation),
        chunks=[
            PostingsChunk(chunk_id=row.chunk_id, document_id=row.document_id, length=row.length) for row in chunk_rows
        ],
        terms=[TermPostings(term=row.term, pairs=bytes(row.pairs)) for row in term_rows],
    )


async def postings_changes(
    *, session: AsyncSession, collection_key: int, after: int, max_documents: int
) -> PostingsChanges | None:
    """The documents changed after generation `after`, with their postings now; None when the
    collection is gone or more than `max_documents` changed. Call it in a snapshot (begin_snapshot)."""
    generation = await _generation(session=session, collection_key=collection_key)
    if generation is None:
        return None
    changed = [
        document_id
        for document_id in (
            await session.execute(
                select(bm25_document_changes.c.document_id)
                .where(
                    bm25_document_changes.c.collection_key == collection_key,
                    bm25_document_changes.c.generation > after,
                )
                .limit(max_documents + 1)
            )
        ).scalars()
    ]
    if len(changed) > max_documents:
        return None
    rows = await session.execute(
        select(
            bm25_postings.c.chunk_id,
            bm25_postings.c.document_id,
            bm25_postings.c.chunk_length,
            bm25_postings.c.term,
            bm25_postings.c.tf,
        ).where(bm25_postings.c.collection_key == collection_key, bm25_postings.c.document_id.in_(changed))
    )
    return PostingsChanges(
        generation=int(generation),
        document_ids=frozenset(changed),
        postings=[
            ChangedPosting(
                chunk=PostingsChunk(chunk_id=row.chunk_id, document_id=row.document_id, length=row.chunk_length),
                term=row.term,
                tf=row.tf,
            )
            for row in rows
        ],
    )


async def hits_with_passages(
    *, session: AsyncSession, tenant_id: str, ranked: Sequence[Ranked], query: str
) -> list[StoredChunk]:
    """The ranked chunks that still exist, in their order, with their scores, each with its best
    passage for the query as `highlight`: the matching words between MARK_START and MARK_END,
    analysed as BM25 analyses (any word of the query may match)."""
    if not ranked:
        return []
    rows = await session.execute(
        text(
            f"""SELECT {", ".join(_HIT_FIELDS)},
                   ts_headline('english', text, {_ANY_QUERY_WORD}, :options) AS passage
            FROM {chunks.schema}.{chunks.name}
            WHERE tenant_id = :tenant_id AND chunk_id = ANY(CAST(:chunk_ids AS text[]))"""
        ),
        {
            "query": query,
            "tenant_id": tenant_id,
            "chunk_ids": [hit.chunk_id for hit in ranked],
            "options": _HEADLINE_OPTIONS,
        },
    )
    found = {row.chunk_id: row._mapping for row in rows}
    return [
        replace(_hit(found[hit.chunk_id], hit.score), highlight=found[hit.chunk_id]["passage"])
        for hit in ranked
        if hit.chunk_id in found
    ]


async def vector_search(
    *, session: AsyncSession, scope: SearchScope, embedding: list[float], model: str, dimensions: int, ef_search: int
) -> list[Ranked]:
    """Nearest first among the vectors of `model`. Runs in a transaction: the scan's settings are SET LOCAL."""
    await _widen_hnsw_scan(session, ef_search)
    # The same expression and predicate as the model's partial index (ensure_vector_index), the
    # model inlined as a literal: a generic plan with a parameter could not prove the index applies.
    distance = sql_cast(chunk_embeddings.c.embedding, Vector(dimensions)).cosine_distance(embedding).label("distance")
    statement = (
        select(chunks.c.chunk_id, distance)
        .select_from(chunk_embeddings.join(chunks, chunks.c.chunk_id == chunk_embeddings.c.chunk_id))
        .where(
            chunk_embeddings.c.model == bindparam("model", model, type_=Text, literal_execute=True),
            chunk_embeddings.c.tenant_id == scope.tenant_id,
            chunk_embeddings.c.embedding.is_not(None),
            _in_scope(scope),
        )
        # By distance alone: a second sort key would stop the HNSW index from giving the order,
        # and every candidate would be read and sorted. Ties are ordered by chunk id below.
        .order_by(distance)
        .limit(scope.limit)
    )
    hits = [Ranked(chunk_id=row.chunk_id, score=1.0 - row.distance) for row in await session.execute(statement)]
    return sorted(hits, key=lambda hit: (-hit.score, hit.chunk_id))


async def _widen_hnsw_scan(session: AsyncSession, ef_search: int) -> None:
    # The tenant and collection filters apply after the HNSW scan, so a scan with the default
    # candidate list (40) can come back short. Widen the list, and on pgvector >= 0.8 let the
    # scan continue until enough rows pass the filters.
    await session.execute(
        text(
            "SELECT set_config('hnsw.ef_search', :ef_search, true),"
            " (SELECT set_config('hnsw.iterative_scan', 'strict_order', true) FROM pg_extension"
            "  WHERE extname = 'vector' AND string_to_array(extversion, '.')::int[] >= ARRAY[0, 8])"
        ),
        {"ef_search": str(ef_search)},
    )


async def document_is_indexed(*, session: AsyncSession, tenant_id: str, document_id: str) -> bool:
    found = await session.execute(
        select(indexed_documents.c.document_id).where(
            indexed_documents.c.tenant_id == tenant_id,
            indexed_documents.c.document_id == document_id,
            indexed_documents.c.deleted.is_(False),
        )
    )
    return found.first() is not None


async def chunks_between(
    *, session: AsyncSession, tenant_id: str, document_id: str, first: int, last: int
) -> list[StoredChunk]:
    statement = (
        select(*_HIT_COLUMNS)
        .where(
            chunks.c.tenant_id == tenant_id,
            chunks.c.document_id == document_id,
            chunks.c.ordinal.between(first, last),
        )
        .order_by(chunks.c.ordinal)
    )
    return [_hit(row._mapping) for row in await session.execute(statement)]


async def chunks_by_id(*, session: AsyncSession, tenant_id: str, chunk_ids: Sequence[str]) -> list[StoredChunk]:
    if not chunk_ids:
        return []
    statement = select(*_HIT_COLUMNS).where(chunks.c.tenant_id == tenant_id, chunks.c.chunk_id.in_(list(chunk_ids)))
    return [_hit(row._mapping) for row in await session.execute(statement)]
