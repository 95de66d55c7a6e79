"""All SQL of the retrieval service. Every query about tenant data filters on tenant_id."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Result,
    RowMapping,
    and_,
    delete,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import REGCONFIG, insert
from sqlalchemy.ext.asyncio import AsyncSession

from parley.retrieval.models import chunks, deleted_collections, embedding_cache, indexed_documents


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
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class NewChunk:
    chunk_id: str
    ordinal: int
    heading: str
    text: str
    token_count: int
    content_hash: str
    embedding: list[float] | None


@dataclass(frozen=True, slots=True)
class SearchScope:
    """Which chunks one search leg may return, and how many."""

    tenant_id: str
    collection_ids: Sequence[str]
    document_ids: Sequence[str]
    limit: int


# A StoredChunk's fields are columns of `chunks`, except the score each read computes.
_HIT_FIELDS = tuple(field.name for field in fields(StoredChunk) if field.name != "score")
_HIT_COLUMNS = tuple(chunks.c[name] for name in _HIT_FIELDS)

_ENGLISH = literal_column("'english'::regconfig", REGCONFIG)


def _hit(row: RowMapping, score: float = 0.0) -> StoredChunk:
    return StoredChunk(**{name: row[name] for name in _HIT_FIELDS}, score=float(score))


def _rowcount(result: Result[Any]) -> int:
    # AsyncSession.execute is typed for any statement; a DELETE's result is a CursorResult.
    return cast(CursorResult[Any], result).rowcount


# --- indexing ---------------------------------------------------------------------------------


async def is_collection_deleted(*, session: AsyncSession, tenant_id: str, collection_id: str) -> bool:
    found = await session.execute(
        select(deleted_collections.c.collection_id).where(
            deleted_collections.c.tenant_id == tenant_id, deleted_collections.c.collection_id == collection_id
        )
    )
    return found.first() is not None


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
            {**document, **{field.name: getattr(chunk, field.name) for field in fields(NewChunk)}}
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


async def cached_embeddings(
    *, session: AsyncSession, model: str, content_hashes: Sequence[str]
) -> dict[str, list[float]]:
    if not content_hashes:
        return {}
    rows = await session.execute(
        select(embedding_cache.c.content_hash, embedding_cache.c.embedding).where(
            embedding_cache.c.model == model, embedding_cache.c.content_hash.in_(set(content_hashes))
        )
    )
    return {row.content_hash: list(row.embedding) for row in rows}


async def cache_embeddings(*, session: AsyncSession, model: str, embeddings: Mapping[str, list[float]]) -> None:
    if not embeddings:
        return
    await session.execute(
        insert(embedding_cache)
        .values([{"model": model, "content_hash": key, "embedding": value} for key, value in embeddings.items()])
        .on_conflict_do_nothing(index_elements=[embedding_cache.c.model, embedding_cache.c.content_hash])
    )


# --- reading ----------------------------------------------------------------------------------


def _in_scope(scope: SearchScope) -> ColumnElement[bool]:
    condition = and_(chunks.c.tenant_id == scope.tenant_id, chunks.c.collection_id.in_(list(scope.collection_ids)))
    if scope.document_ids:
        condition = and_(condition, chunks.c.document_id.in_(list(scope.document_ids)))
    return condition


async def keyword_search(*, session: AsyncSession, scope: SearchScope, query: str) -> list[StoredChunk]:
    tsquery = func.websearch_to_tsquery(_ENGLISH, query)
    rank = func.ts_rank_cd(chunks.c.tsv, tsquery).label("rank")
    statement = (
        select(*_HIT_COLUMNS, rank)
        .where(_in_scope(scope), chunks.c.tsv.bool_op("@@")(tsquery))
        .order_by(rank.desc(), chunks.c.chunk_id)
        .limit(scope.limit)
    )
    return [_hit(row._mapping, row.rank) for row in await session.execute(statement)]


async def vector_search(*, session: AsyncSession, scope: SearchScope, embedding: list[float]) -> list[StoredChunk]:
    await _widen_hnsw_scan(session, scope.limit)
    distance = chunks.c.embedding.cosine_distance(embedding).label("distance")
    statement = (
        select(*_HIT_COLUMNS, distance)
        .where(_in_scope(scope), chunks.c.embedding.is_not(None))
        .order_by(distance, chunks.c.chunk_id)
        .limit(scope.limit)
    )
    return [_hit(row._mapping, 1.0 - row.distance) for row in await session.execute(statement)]


async def _widen_hnsw_scan(session: AsyncSession, limit: int) -> None:
    # The tenant and collection filters apply after the HNSW scan, so a scan with the default
    # candidate list (40) can come back short. Widen the list, and on pgvector >= 0.8 let the
    # scan continue until enough rows pass the filters.
    await session.execute(
        text(
            "SELECT set_config('hnsw.ef_search', :ef_search, true),"
            " (SELECT set_config('hnsw.iterative_scan', 'strict_order', true) FROM pg_extension"
            "  WHERE extname = 'vector' AND string_to_array(extversion, '.')::int[] >= ARRAY[0, 8])"
        ),
        {"ef_search": str(min(1000, max(100, 4 * limit)))},
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
