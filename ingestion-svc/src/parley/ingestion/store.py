"""All of ingestion's SQL. Every query that touches a tenant's rows filters on tenant_id."""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from parley.ingestion.ids import chunk_id, new_id, section_id
from parley.ingestion.models import (
    AnalysisState,
    Status,
    artifacts,
    chunks,
    collections,
    document_versions,
    documents,
    sections,
)
from parley.ingestion.sections import DialogueBlock, Scene, Section, SectionChunk, SectionKey, section_keys
from parley.kit import db
from parley.kit.paging import Cursor

TENANT_ROLE = "parley_ingestion_tenant"


async def enter_tenant(*, session: AsyncSession, tenant_id: str) -> None:
    """Give the rest of this transaction to one tenant: PostgreSQL then hides every other tenant's
    rows, whatever a query's WHERE says (row-level security, migration 0005). First thing in every
    transaction on tenant data; the outbox relay and migrations run as the login role."""
    await db.enter_tenant(session, role=TENANT_ROLE, tenant_id=tenant_id)


@dataclass(frozen=True, slots=True)
class CollectionRecord:
    id: uuid.UUID
    name: str
    description: str
    document_count: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    id: uuid.UUID
    tenant_id: str
    collection_id: uuid.UUID
    title: str
    content_type: str
    filename: str
    version: int
    status: Status
    chunk_count: int
    token_count: int
    size_bytes: int
    content_sha256: str
    error: str
    created_at: datetime
    updated_at: datetime
    failed_stage: str
    done: int
    total: int
    message: str
    analysis_state: AnalysisState
    analysis_version: int


@dataclass(frozen=True, slots=True)
class SectionRecord:
    id: uuid.UUID
    document_id: uuid.UUID
    ordinal: int
    kind: str
    heading: str
    heading_path: tuple[str, ...]
    page: int | None
    tokens: int
    text: str
    content_sha256: str
    scene: Scene | None


def _scene(value: dict[str, Any] | None) -> Scene | None:
    """A scene as `asdict` stored it in JSONB: lists back to tuples, speeches back to records."""
    if value is None:
        return None
    return Scene(
        **value
        | {
            "characters": tuple(value["characters"]),
            "dialogue_blocks": tuple(DialogueBlock(**block) for block in value["dialogue_blocks"]),
            "act_path": tuple(value["act_path"]),
        }
    )


def _section(row: RowMapping) -> SectionRecord:
    values = {field.name: row[field.name] for field in fields(SectionRecord)}
    return SectionRecord(**values | {"heading_path": tuple(row["heading_path"]), "scene": _scene(row["scene"])})


def _document(row: RowMapping) -> DocumentRecord:
    values = {field.name: row[field.name] for field in fields(DocumentRecord)}
    return DocumentRecord(
        **values | {"status": Status(row["status"]), "analysis_state": AnalysisState(row["analysis_state"])}
    )


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    id: uuid.UUID
    tenant_id: str
    document_id: uuid.UUID
    kind: str
    key: str
    content: dict[str, object]
    tokens: int
    model: str
    document_version: int
    source_sha256: str
    changed_scenes: int
    stale: bool
    created_at: datetime
    updated_at: datetime


def _artifact(row: RowMapping) -> ArtifactRecord:
    return ArtifactRecord(**{field.name: row[field.name] for field in fields(ArtifactRecord)})


_document_count = (
    select(func.count())
    .select_from(documents)
    .where(documents.c.collection_id == collections.c.id, documents.c.tenant_id == collections.c.tenant_id)
    .scalar_subquery()
)


async def insert_collection(
    *, session: AsyncSession, tenant_id: str, collection_id: uuid.UUID, name: str, description: str
) -> CollectionRecord | None:
    """None when the tenant already has a collection of that name."""
    row = (
        await session.execute(
            insert(collections)
            .values(id=collection_id, tenant_id=tenant_id, name=name, description=description)
            .on_conflict_do_nothing(constraint="collections_tenant_name_key")
            .returning(collections.c.id, collections.c.name, collections.c.description, collections.c.created_at)
        )
    ).one_or_none()
    if row is None:
        return None
    return CollectionRecord(
        id=row.id, name=row.name, description=row.description, document_count=0, created_at=row.created_at
    )


async def get_collection(*, session: AsyncSession, tenant_id: str, collection_id: uuid.UUID) -> CollectionRecord | None:
    row = (
        await session.execute(
            select(
                collections.c.id,
                collections.c.name,
                collections.c.description,
                collections.c.created_at,
                _document_count.label("document_count"),
            ).where(collections.c.tenant_id == tenant_id, collections.c.id == collection_id)
        )
    ).one_or_none()
    return None if row is None else CollectionRecord(**row._asdict())


async def collection_exists(*, session: AsyncSession, tenant_id: str, collection_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(collections.c.id).where(collections.c.tenant_id == tenant_id, collections.c.id == collection_id)
    )
    return found is not None


async def list_collections(
    *, session: AsyncSession, tenant_id: str, limit: int, after: Cursor | None
) -> list[CollectionRecord]:
    query = select(
        collections.c.id,
        collections.c.name,
        collections.c.description,
        collections.c.created_at,
        _document_count.label("document_count"),
    ).where(collections.c.tenant_id == tenant_id)
    if after is not None:
        query = query.where(tuple_(collections.c.created_at, collections.c.id) < tuple_(after.at, after.id))
    rows = await session.execute(query.order_by(collections.c.created_at.desc(), collections.c.id.desc()).limit(limit))
    return [CollectionRecord(**row._asdict()) for row in rows]


async def delete_collection(*, session: AsyncSession, tenant_id: str, collection_id: uuid.UUID) -> bool:
    """Its documents, versions and chunks go with it (foreign keys cascade)."""
    deleted = await session.scalar(
        delete(collections)
        .where(collections.c.tenant_id == tenant_id, collections.c.id == collection_id)
        .returning(collections.c.id)
    )
    return deleted is not None


async def find_document_by_content(
    *, session: AsyncSession, tenant_id: str, collection_id: uuid.UUID, title: str, content_sha256: str
) -> DocumentRecord | None:
    row = (
        (
            await session.execute(
                select(documents).where(
                    documents.c.tenant_id == tenant_id,
                    documents.c.collection_id == collection_id,
                    documents.c.title == title,
                    documents.c.content_sha256 == content_sha256,
                )
            )
        )
        .mappings()
        .one_or_none()
    )
    return None if row is None else _document(row)


async def insert_document(
    *,
    session: AsyncSession,
    tenant_id: str,
    document_id: uuid.UUID,
    collection_id: uuid.UUID,
    title: str,
    content_type: str,
    filename: str,
    status: Status,
    content: bytes,
    size_bytes: int,
    content_sha256: str,
    message: str,
) -> DocumentRecord | None:
    """Version 1 of a new document. None when the same title and content are already in the collection."""
    row = (
        (
            await session.execute(
                insert(documents)
                .values(
                    id=document_id,
                    tenant_id=tenant_id,
                    collection_id=collection_id,
                    title=title,
                    content_type=content_type,
                    filename=filename,
                    version=1,
                    status=status,
                    size_bytes=size_bytes,
                    content_sha256=content_sha256,
                    message=message,
                )
                .on_conflict_do_nothing(constraint="documents_dedup_key")
                .returning(*documents.c)
            )
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        return None
    await session.execute(
        insert(document_versions).values(
            document_id=document_id, version=1, tenant_id=tenant_id, content=content, content_sha256=content_sha256
        )
    )
    return _document(row)


async def get_document(
    *, session: AsyncSession, tenant_id: str, document_id: uuid.UUID, for_update: bool = False
) -> DocumentRecord | None:
    query = select(documents).where(documents.c.tenant_id == tenant_id, documents.c.id == document_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().one_or_none()
    return None if row is None else _document(row)


async def list_documents(
    *, session: AsyncSession, tenant_id: str, collection_id: uuid.UUID, limit: int, after: Cursor | None
) -> list[DocumentRecord]:
    query = select(documents).where(documents.c.tenant_id == tenant_id, documents.c.collection_id == collection_id)
    if after is not None:
        query = query.where(tuple_(documents.c.created_at, documents.c.id) < tuple_(after.at, after.id))
    rows = await session.execute(query.order_by(documents.c.created_at.desc(), documents.c.id.desc()).limit(limit))
    return [_document(row) for row in rows.mappings()]


async def delete_document(*, session: AsyncSession, tenant_id: str, document_id: uuid.UUID) -> DocumentRecord | None:
    """The deleted document (its versions and chunks cascade), or None when there was none."""
    row = (
        (
            await session.execute(
                delete(documents)
                .where(documents.c.tenant_id == tenant_id, documents.c.id == document_id)
                .returning(*documents.c)
            )
        )
        .mappings()
        .one_or_none()
    )
    return None if row is None else _document(row)


async def get_version_content(
    *, session: AsyncSession, tenant_id: str, document_id: uuid.UUID, version: int
) -> bytes | None:
    return await session.scalar(
        select(document_versions.c.content).where(
            document_versions.c.tenant_id == tenant_id,
            document_versions.c.document_id == document_id,
            document_versions.c.version == version,
        )
    )


async def set_status(
    *,
    session: AsyncSession,
    tenant_id: str,
    document_id: uuid.UUID,
    status: Status,
    error: str = "",
    failed_stage: str = "",
    done: int = 0,
    total: int = 0,
    message: str = "",
    chunk_count: int | None = None,
    token_count: int | None = None,
) -> DocumentRecord | None:
    """A new stage (its detail replaces the last stage's)."""
    values: dict[str, object] = {
        "status": status,
        "error": error,
        "failed_stage": failed_stage,
        "done": done,
        "total": total,
        "message": message,
        "updated_at": func.now(),
    }
    if chunk_count is not None:
        values["chunk_count"] = chunk_count
    if token_count is not None:
        values["token_count"] = token_count
    row = (
        (
            await session.execute(
                update(documents)
                .where(documents.c.tenant_id == tenant_id, documents.c.id == document_id)
                .values(**values)
                .returning(*documents.c)
            )
        )
        .mappings()
        .one_or_none()
    )
    return None if row is None else _document(row)


async def replace_sections_and_chunks(
    *,
    session: AsyncSession,
    tenant_id: str,
    document_id: uuid.UUID,
    version: int,
    new_sections: Sequence[Section],
    new_chunks: Sequence[SectionChunk],
) -> None:
    """The version's sections and chunks become exactly these; running it twice changes nothing.
    Older versions' chunks go: a chunk of an unchanged section has the same id in every version."""
    await session.execute(delete(chunks).where(chunks.c.tenant_id == tenant_id, chunks.c.document_id == document_id))
    await session.execute(
        delete(sections).where(
            sections.c.tenant_id == tenant_id, sections.c.document_id == document_id, sections.c.version == version
        )
    )
    if new_sections:
        await session.execute(
            insert(sections),
            [
                {
                    "id": section_id(document_id, version, section.ordinal),
                    "tenant_id": tenant_id,
                    "document_id": document_id,
                    "version": version,
                    "ordinal": section.ordinal,
                    "kind": section.kind,
                    "heading": section.heading,
                    "heading_path": list(section.heading_path),
                    "page": section.page,
                    "tokens": section.tokens,
                    "text": section.text,
                    "content_sha256": section.content_sha256,
                    "scene": None if section.scene is None else asdict(section.scene),
                }
                for section in new_sections
            ],
        )
    if new_chunks:
        await session.execute(
            insert(chunks),
            [
                {
                    "chunk_id": chunk_id(document_id, chunk.key),
                    "tenant_id": tenant_id,
                    "document_id": document_id,
                    "version": version,
                    "ordinal": chunk.ordinal,
                    "section_ordinal": chunk.section_ordinal,
                    "heading": chunk.heading,
                    "text": chunk.text,
                    "token_count": chunk.token_count,
                    "content_hash": chunk.content_hash,
                }
                for chunk in new_chunks
            ],
        )


async def get_section(
    *, session: AsyncSession, tenant_id: str, document_id: uuid.UUID, version: int, ordinal: int
) -> SectionRecord | None:
    row = (
        (
            await session.execute(
                select(sections).where(
                    sections.c.tenant_id == tenant_id,
                    sections.c.document_id == document_id,
                    sections.c.version == version,
                    sections.c.ordinal == ordinal,
                )
            )
        )
        .mappings()
        .one_or_none()
    )
    return None if row is None else _section(row)


async def list_sections(
    *,
    session: AsyncSession,
    tenant_id: str,
    document_id: uuid.UUID,
    version: int,
    after_ordinal: int = -1,
    limit: int | None = None,
    scenes_only: bool = False,
) -> list[SectionRecord]:
    """The version's sections in order, from the one after `after_ordinal`."""
    query = select(sections).where(
        sections.c.tenant_id == tenant_id,
        sections.c.document_id == document_id,
        sections.c.version == version,
        sections.c.ordinal > after_ordinal,
    )
    if scenes_only:
        query = query.where(sections.c.scene.is_not(None))
    rows = await session.execute(query.order_by(sections.c.ordinal).limit(limit))
    return [_section(row) for row in rows.mappings()]


async def chunked_pieces(
    *, session: AsyncSession, tenant_id: str, document_id: uuid.UUID, version: int
) -> dict[SectionKey, list[str]]:
    """The chunk texts of the document's chunked version other than `version`, by section key."""
    held = (
        await session.execute(
            select(chunks.c.version, chunks.c.section_ordinal, chunks.c.text)
            .where(chunks.c.tenant_id == tenant_id, chunks.c.document_id == document_id, chunks.c.version != version)
            .order_by(chunks.c.version.desc(), chunks.c.ordinal)
        )
    ).all()
    if not held:
        return {}
    chunked_version = held[0].version
    hashes = (
        await session.execute(
            select(sections.c.ordinal, sections.c.content_sha256)
            .where(
                sections.c.tenant_id == tenant_id,
                sections.c.document_id == document_id,
                sections.c.version == chunked_version,
            )
            .order_by(sections.c.ordinal)
        )
    ).all()
    key_of = dict(zip((row.ordinal for row in hashes), section_keys(row.content_sha256 for row in hashes), strict=True))
    pieces: dict[SectionKey, list[str]] = {}
    for row in held:
        if row.version == chunked_version and row.section_ordinal in key_of:
            pieces.setdefault(key_of[row.section_ordinal], []).append(row.text)
    return pieces


async def latest_sections(*, session: AsyncSession, tenant_id: str, document_id: uuid.UUID) -> list[SectionRecord]:
    """The sections of the document's newest version that has any (a version still queued has none)."""
    newest = await session.scalar(
        select(func.max(sections.c.version)).where(
            sections.c.tenant_id == tenant_id, sections.c.document_id == document_id
        )
    )
    if newest is None:
        return []
    return await list_sections(session=session, tenant_id=tenant_id, document_id=document_id, version=newest)


async def add_version(
    *,
    session: AsyncSession,
    tenant_id: str,
    document: DocumentRecord,
    content: bytes,
    content_sha256: str,
    content_type: str,
    filename: str,
    message: str,
) -> DocumentRecord:
    """The next version of a document (locked by the caller), QUEUED; the id stays."""
    version = document.version + 1
    await session.execute(
        insert(document_versions).values(
            document_id=document.id,
            version=version,
            tenant_id=tenant_id,
            content=content,
            content_sha256=content_sha256,
        )
    )
    row = (
        (
            await session.execute(
                update(documents)
                .where(documents.c.tenant_id == tenant_id, documents.c.id == document.id)
                .values(
                    version=version,
                    status=Status.QUEUED,
                    content_type=content_type,
                    filename=filename,
                    size_bytes=len(content),
                    content_sha256=content_sha256,
                    error="",
                    failed_stage="",
                    done=0,
                    total=0,
                    message=message,
                    updated_at=func.now(),
                )
                .returning(*documents.c)
            )
        )
        .mappings()
        .one()
    )
    return _document(row)


async def set_analysis(
    *, session: AsyncSession, tenant_id: str, document_id: uuid.UUID, state: AnalysisState, version: int
) -> None:
    """The document's analysis state, and the version its artifacts' staleness is counted up to."""
    await session.execute(
        update(documents)
        .where(documents.c.tenant_id == tenant_id, documents.c.id == document_id)
        .values(analysis_state=state, analysis_version=version)
    )


async def list_artifacts(
    *, session: AsyncSession, tenant_id: str, document_id: uuid.UUID, kinds: Sequence[str] = ()
) -> list[ArtifactRecord]:
    """The document's artifacts (of `kinds`, when given), by kind and key."""
    query = select(artifacts).where(artifacts.c.tenant_id == tenant_id, artifacts.c.document_id == document_id)
    if kinds:
        query = query.where(artifacts.c.kind.in_(kinds))
    rows = await session.execute(query.order_by(artifacts.c.kind, artifacts.c.key))
    return [_artifact(row) for row in rows.mappings()]


async def upsert_artifact(
    *,
    session: AsyncSession,
    tenant_id: str,
    document_id: uuid.UUID,
    document_version: int,
    kind: str,
    key: str,
    content: Mapping[str, object],
    tokens: int,
    model: str,
    source_sha256: str,
) -> None:
    """Written anew: fresh, nothing changed since. The same (document, kind, key) twice is one row."""
    written = {
        "content": dict(content),
        "tokens": tokens,
        "model": model,
        "document_version": document_version,
        "source_sha256": source_sha256,
        "changed_scenes": 0,
        "stale": False,
    }
    await session.execute(
        insert(artifacts)
        .values(id=new_id(), tenant_id=tenant_id, document_id=document_id, kind=kind, key=key, **written)
        .on_conflict_do_update(constraint="artifacts_document_kind_key_key", set_=written | {"updated_at": func.now()})
    )


async def mark_artifact(
    *, session: AsyncSession, tenant_id: str, artifact_id: uuid.UUID, changed_scenes: int, stale: bool
) -> None:
    """How many scenes changed since the artifact was written, and whether that makes it stale.
    `updated_at` stays: it says when the content was written."""
    await session.execute(
        update(artifacts)
        .where(artifacts.c.tenant_id == tenant_id, artifacts.c.id == artifact_id)
        .values(changed_scenes=changed_scenes, stale=stale)
    )


async def delete_artifacts(*, session: AsyncSession, tenant_id: str, artifact_ids: Sequence[uuid.UUID]) -> None:
    if artifact_ids:
        await session.execute(
            delete(artifacts).where(artifacts.c.tenant_id == tenant_id, artifacts.c.id.in_(artifact_ids))
        )
