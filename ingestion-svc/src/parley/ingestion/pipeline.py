"""The pipeline that makes a stored version searchable, one committed step at a time:

    QUEUED ──IngestJob──▶ CHUNKING ──sections + chunks + ChunksUpserted──▶ INDEXING ──ChunksIndexed──▶ READY
                              └────────── nothing to index, or too large for one event ──▶ FAILED

Each step is one transaction under the document's row lock; an event it announces to another
service goes to the outbox in that transaction, and its progress is published after the commit.
Every step is redelivery-safe: a job for a deleted document or a superseded version, or one
already done, finishes without doing anything.
"""

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from parley.ingestion import store
from parley.ingestion.config import Settings
from parley.ingestion.formats import parse_document
from parley.ingestion.ids import chunk_id
from parley.ingestion.messages import to_proto
from parley.ingestion.models import Status, outbox
from parley.ingestion.progress import Progress
from parley.ingestion.sections import Section, SectionChunk, SectionKey, chunk_sections
from parley.kit.contracts import CHUNKS_UPSERTED, chunks_msg_id
from parley.kit.db import Sessions
from parley.kit.errors import InvalidInput
from parley.kit.ids import as_uuid
from parley.kit.outbox import enqueue
from parley.v1 import events_pb2

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self, *, sessions: Sessions, progress: Progress, settings: Settings, notify_outbox: Callable[[], None]
    ) -> None:
        self._sessions = sessions
        self._progress = progress
        self._settings = settings
        self._notify_outbox = notify_outbox

    async def chunk_version(self, *, tenant_id: str, document_id: str, version: int) -> None:
        """QUEUED → CHUNKING → INDEXING (or FAILED): chunk one version and announce its chunks."""
        document_uuid = as_uuid(document_id)
        if document_uuid is None:
            log.error("dropped an ingest job with a malformed document id", extra={"fields": {"id": document_id}})
            return
        async with self._sessions() as session, session.begin():
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=document_uuid, for_update=True
            )
            if (
                document is None
                or document.version != version
                or document.status not in (Status.QUEUED, Status.CHUNKING)
            ):
                return
            content = await store.get_version_content(
                session=session, tenant_id=tenant_id, document_id=document_uuid, version=version
            )
            previous = await store.chunked_pieces(
                session=session, tenant_id=tenant_id, document_id=document_uuid, version=version
            )
            started = document.status == Status.QUEUED
            if started:
                document = await store.set_status(
                    session=session, tenant_id=tenant_id, document_id=document_uuid, status=Status.CHUNKING
                )
        if started and document is not None:
            await self._progress.publish(document)

        sections: list[Section] = []
        pieces: list[SectionChunk] = []
        error = ""
        if content is None or document is None:
            error = "the document's content is missing"
        else:
            try:
                # Parsing and tokenizing megabytes blocks for a while; keep the loop free for other
                # consumers and RPCs.
                sections, pieces = await asyncio.to_thread(
                    self._split,
                    content,
                    filename=document.filename,
                    content_type=document.content_type,
                    previous=previous,
                )
            except InvalidInput as refused:
                error = str(refused)
            except Exception:
                log.exception("chunking failed", extra={"fields": {"document_id": document_id}})
                error = "the document could not be split into chunks"
            if not error and not pieces:
                error = "the document has no text to index"

        async with self._sessions() as session, session.begin():
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=document_uuid, for_update=True
            )
            if document is None or document.version != version or document.status != Status.CHUNKING:
                return
            upserted = events_pb2.ChunksUpserted(
                tenant_id=tenant_id,
                collection_id=str(document.collection_id),
                document_id=str(document.id),
                version=version,
                document_title=document.title,
                chunks=[
                    to_proto(events_pb2.ChunkRecord, piece, chunk_id=str(chunk_id(document.id, piece.key)))
                    for piece in pieces
                ],
            )
            if not error and upserted.ByteSize() > self._settings.max_event_bytes:
                error = (
                    f"the document's {len(pieces)} chunks are too large to index in one event "
                    f"({upserted.ByteSize()} bytes, limit {self._settings.max_event_bytes})"
                )
            if error:
                document = await store.set_status(
                    session=session, tenant_id=tenant_id, document_id=document_uuid, status=Status.FAILED, error=error
                )
            else:
                await store.replace_sections_and_chunks(
                    session=session,
                    tenant_id=tenant_id,
                    document_id=document_uuid,
                    version=version,
                    new_sections=sections,
                    new_chunks=pieces,
                )
                document = await store.set_status(
                    session=session,
                    tenant_id=tenant_id,
                    document_id=document_uuid,
                    status=Status.INDEXING,
                    chunk_count=len(pieces),
                    token_count=sum(piece.token_count for piece in pieces),
                )
                await enqueue(
                    session=session,
                    table=outbox,
                    subject=CHUNKS_UPSERTED,
                    msg_id=chunks_msg_id(document_uuid, version),
                    message=upserted,
                )
        if not error:
            self._notify_outbox()
        if document is not None:
            await self._progress.publish(document)

    def _split(
        self, content: bytes, *, filename: str, content_type: str, previous: Mapping[SectionKey, Sequence[str]]
    ) -> tuple[list[Section], list[SectionChunk]]:
        """The stored bytes read as the type the upload settled on, and their chunks; a section the
        previous chunked version has too keeps its pieces (only changed sections are split)."""
        parsed = parse_document(content, filename=filename, declared=content_type)
        chunks = chunk_sections(parsed.sections, max_tokens=self._settings.chunk_max_tokens, previous=previous)
        return parsed.sections, chunks

    async def mark_indexed(self, *, tenant_id: str, document_id: str, version: int) -> None:
        """INDEXING → READY, once retrieval says the version is searchable."""
        document_uuid = as_uuid(document_id)
        if document_uuid is None:
            log.error("dropped a ChunksIndexed with a malformed document id", extra={"fields": {"id": document_id}})
            return
        async with self._sessions() as session, session.begin():
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=document_uuid, for_update=True
            )
            # Another version's news, a deleted document, or a redelivery after we already moved on.
            if document is None or document.version != version or document.status != Status.INDEXING:
                return
            document = await store.set_status(
                session=session, tenant_id=tenant_id, document_id=document_uuid, status=Status.READY
            )
        if document is not None:
            await self._progress.publish(document)
