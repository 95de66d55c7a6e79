"""Keeping the index in step with ingestion: a document version's chunk set in, deletions out.

Each event is applied in one transaction, and redelivery is harmless: an upsert whose version is
not newer than the one held (or whose document or collection is deleted) changes nothing and
announces nothing, and the `ChunksIndexed` of a version is enqueued in the same transaction that
made it searchable. A version's BM25 postings are replaced in that same transaction, and deleted
with their document or collection, so the keyword leg never disagrees with the chunks. The
chunks' vectors (of each model being written, see vectors.py) go in with them too.
"""

import asyncio
import logging
from dataclasses import fields

from sqlalchemy.ext.asyncio import AsyncSession

from parley.kit import outbox
from parley.kit.contracts import CHUNKS_INDEXED, index_failed_msg_id, indexed_msg_id
from parley.kit.db import Sessions
from parley.retrieval import store
from parley.retrieval.bm25 import BM25_DEFAULTS, Bm25Parameters
from parley.retrieval.models import outbox as outbox_table
from parley.retrieval.store import NewChunk
from parley.retrieval.vectors import Vectors, embedding_input, stored
from parley.v1 import events_pb2

log = logging.getLogger(__name__)


class Indexer:
    """Applies ChunksUpserted and ChunksDeleted to the index, embedding only what it has never seen."""

    def __init__(self, *, sessions: Sessions, vectors: Vectors, bm25: Bm25Parameters = BM25_DEFAULTS) -> None:
        self._sessions = sessions
        self._vectors = vectors
        self._bm25 = bm25

    async def receive(self, event: events_pb2.ChunksUpserted) -> bool:
        """A version's chunk set, or one part of it: a whole set is indexed at once; a part is held
        until the version's every part has come (in any order, each possibly twice), then the
        version is indexed whole, as if it had come in one message. True when the index changed."""
        if event.parts <= 1:
            return await self.index_version(event)
        _require(event.tenant_id, "tenant_id")
        _require(event.document_id, "document_id")
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=event.tenant_id)
            payloads = await store.hold_upsert_part(
                session=session,
                tenant_id=event.tenant_id,
                document_id=event.document_id,
                version=event.version,
                part=event.part,
                parts=event.parts,
                payload=event.SerializeToString(),
            )
        if payloads is None:
            log.info("held a part of a chunk set", extra={"fields": {**_fields(event), "part": event.part}})
            return False
        whole = events_pb2.ChunksUpserted(
            tenant_id=event.tenant_id,
            collection_id=event.collection_id,
            document_id=event.document_id,
            version=event.version,
            document_title=event.document_title,
        )
        for payload in payloads:
            whole.chunks.extend(events_pb2.ChunksUpserted.FromString(payload).chunks)
        changed = await self.index_version(whole)  # drops the held parts with the version's write
        if not changed:  # indexed already (a part delivered twice), or superseded: the parts go all the same
            async with self._sessions() as session, session.begin():
                await store.enter_tenant(session=session, tenant_id=event.tenant_id)
                await store.drop_upsert_parts(
                    session=session,
                    tenant_id=event.tenant_id,
                    document_id=event.document_id,
                    through_version=event.version,
                )
        return changed

    async def index_version(self, event: events_pb2.ChunksUpserted) -> bool:
        """Make one document version searchable. True when it changed the index (and enqueued ChunksIndexed)."""
        _require(event.tenant_id, "tenant_id")
        _require(event.collection_id, "collection_id")
        _require(event.document_id, "document_id")
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=event.tenant_id)
            if await self._ignored(session, event, claim=False):
                return False
        # Embedded between two transactions: no connection or document lock is held while a model
        # (a remote one above all) answers. Redelivered, the same texts come from the cache.
        contents = [embedding_input(chunk.heading, chunk.text) for chunk in event.chunks]
        vectors = {
            embedder.name: await self._vectors.embed(tenant_id=event.tenant_id, embedder=embedder, contents=contents)
            for embedder in self._vectors.writing()
        }
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=event.tenant_id)
            # Again, now for good: the version is claimed under the document's row lock.
            if await self._ignored(session, event, claim=True):
                return False
            await store.replace_document_chunks(
                session=session,
                tenant_id=event.tenant_id,
                collection_id=event.collection_id,
                document_id=event.document_id,
                version=event.version,
                document_title=event.document_title,
                new_chunks=[_new_chunk(chunk) for chunk in event.chunks],
            )
            # Parts this version (or an older one) left held are done with.
            await store.drop_upsert_parts(
                session=session,
                tenant_id=event.tenant_id,
                document_id=event.document_id,
                through_version=event.version,
            )
            for model, made in vectors.items():
                await store.add_vectors(
                    session=session,
                    tenant_id=event.tenant_id,
                    model=model,
                    vectors={chunk.chunk_id: stored(vector) for chunk, vector in zip(event.chunks, made, strict=True)},
                )
            await store.replace_postings(
                session=session,
                tenant_id=event.tenant_id,
                collection_id=event.collection_id,
                document_id=event.document_id,
                texts={chunk.chunk_id: content for chunk, content in zip(event.chunks, contents, strict=True)},
                bm25=self._bm25,
            )
            await outbox.enqueue(
                session=session,
                table=outbox_table,
                subject=CHUNKS_INDEXED,
                msg_id=indexed_msg_id(event.document_id, event.version),
                message=events_pb2.ChunksIndexed(
                    tenant_id=event.tenant_id,
                    document_id=event.document_id,
                    version=event.version,
                    chunk_count=len(event.chunks),
                ),
            )
        log.info("indexed a document version", extra={"fields": {**_fields(event), "chunks": len(event.chunks)}})
        return True

    async def give_up(self, event: events_pb2.ChunksUpserted, reason: str) -> None:
        """The version's upsert kept failing and was parked: tell ingestion, so the document ends
        FAILED with the reason instead of sitting in `indexing` for ever."""
        async with self._sessions.begin() as session:
            await outbox.enqueue(
                session=session,
                table=outbox_table,
                subject=CHUNKS_INDEXED,
                msg_id=index_failed_msg_id(event.document_id, event.version),
                message=events_pb2.ChunksIndexed(
                    tenant_id=event.tenant_id, document_id=event.document_id, version=event.version, error=reason
                ),
            )
        log.error("gave up indexing a document version", extra={"fields": {**_fields(event), "reason": reason}})

    async def _ignored(self, session: AsyncSession, event: events_pb2.ChunksUpserted, *, claim: bool) -> bool:
        """Whether the event changes nothing: its collection is deleted, or its version is not newer
        than the one held (with `claim`, the version is recorded as held when it is newer)."""
        if await store.is_collection_deleted(
            session=session, tenant_id=event.tenant_id, collection_id=event.collection_id
        ):
            log.info("ignored chunks of a deleted collection", extra={"fields": _fields(event)})
            return True
        if claim:
            newer = await store.claim_document_version(
                session=session,
                tenant_id=event.tenant_id,
                document_id=event.document_id,
                collection_id=event.collection_id,
                version=event.version,
            )
        else:
            newer = await store.is_newer_version(
                session=session, tenant_id=event.tenant_id, document_id=event.document_id, version=event.version
            )
        if not newer:
            log.info("ignored a version not newer than the indexed one", extra={"fields": _fields(event)})
        return not newer

    async def backfill_postings(self, stopping: asyncio.Event) -> None:
        """Give BM25 postings to the documents indexed before postings existed (migration 0002), so
        keyword search finds them without a re-upload. Run at start; idempotent. Each document in a
        transaction of its own, under the document's lock, so it cannot overwrite the postings of a
        version indexed meanwhile."""
        async with self._sessions() as session:
            # Across tenants: the service's login role, outside row-level security.
            pending = await store.documents_without_postings(session=session)
        done = 0
        for document in pending:
            if stopping.is_set():
                break
            async with self._sessions() as session, session.begin():
                await store.enter_tenant(session=session, tenant_id=document.tenant_id)
                if not await store.lock_indexed_document(
                    session=session, tenant_id=document.tenant_id, document_id=document.document_id
                ) or await store.has_postings(
                    session=session,
                    tenant_id=document.tenant_id,
                    collection_id=document.collection_id,
                    document_id=document.document_id,
                ):
                    continue
                chunk_texts = await store.document_chunk_texts(
                    session=session, tenant_id=document.tenant_id, document_id=document.document_id
                )
                await store.replace_postings(
                    session=session,
                    tenant_id=document.tenant_id,
                    collection_id=document.collection_id,
                    document_id=document.document_id,
                    texts={chunk.chunk_id: embedding_input(chunk.heading, chunk.text) for chunk in chunk_texts},
                    bm25=self._bm25,
                )
                done += 1
        if done:
            log.info("gave BM25 postings to documents indexed before them", extra={"fields": {"documents": done}})

    async def remove(self, event: events_pb2.ChunksDeleted) -> int:
        """Drop a document's chunks, or a whole collection's when document_id is empty."""
        _require(event.tenant_id, "tenant_id")
        _require(event.collection_id, "collection_id")
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=event.tenant_id)
            if event.document_id:
                removed = await store.delete_document(
                    session=session,
                    tenant_id=event.tenant_id,
                    collection_id=event.collection_id,
                    document_id=event.document_id,
                )
                await store.forget_document_postings(
                    session=session,
                    tenant_id=event.tenant_id,
                    collection_id=event.collection_id,
                    document_id=event.document_id,
                )
            else:
                removed = await store.delete_collection(
                    session=session, tenant_id=event.tenant_id, collection_id=event.collection_id
                )
                await store.forget_collection_postings(
                    session=session, tenant_id=event.tenant_id, collection_id=event.collection_id
                )
        log.info(
            "removed chunks",
            extra={
                "fields": {
                    "tenant_id": event.tenant_id,
                    "collection_id": event.collection_id,
                    "document_id": event.document_id,
                    "chunks": removed,
                }
            },
        )
        return removed


def _new_chunk(chunk: events_pb2.ChunkRecord) -> NewChunk:
    # NewChunk names its fields as ChunkRecord does: a field both have is copied, never listed.
    return NewChunk(**{field.name: getattr(chunk, field.name) for field in fields(NewChunk)})


def _require(value: str, name: str) -> None:
    if not value:
        # Raised, not skipped: the consumer retries and then parks it, where someone will look.
        raise ValueError(f"event without {name}")


def _fields(event: events_pb2.ChunksUpserted) -> dict[str, object]:
    return {"tenant_id": event.tenant_id, "document_id": event.document_id, "version": event.version}
