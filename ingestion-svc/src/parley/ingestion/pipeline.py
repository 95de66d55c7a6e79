"""The pipeline that makes a stored version searchable, one committed step at a time:

    QUEUED ──IngestJob──▶ PARSING ──▶ CHUNKING ──sections + chunks + ChunksUpserted──▶ INDEXING ──ChunksIndexed──▶ READY
                                                                        (or ANALYZING, then READY: artifacts.py)
                            └── unreadable, nothing to index, too large for one event ──▶ FAILED (stage, why)
                            └── the job failing max_deliver times (parked) ──▶ FAILED (stage, why)

Each step is one transaction under the document's row lock; an event it announces to another
service goes to the outbox in that transaction, and its progress is published after the commit.
Every step is redelivery-safe: a job for a deleted document or a superseded version, or one
already done, finishes without doing anything.
"""

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence

from parley.ingestion import store
from parley.ingestion.artifacts import Artifacts
from parley.ingestion.config import Settings
from parley.ingestion.formats import Parser
from parley.ingestion.ids import chunk_id
from parley.ingestion.messages import to_proto
from parley.ingestion.models import Status, outbox
from parley.ingestion.progress import Progress
from parley.ingestion.sections import Section, SectionChunk, chunk_sections
from parley.ingestion.store import DocumentRecord
from parley.kit.contracts import CHUNKS_UPSERTED, chunks_msg_id
from parley.kit.db import Sessions
from parley.kit.errors import InvalidInput
from parley.kit.ids import as_uuid
from parley.kit.outbox import enqueue
from parley.v1 import events_pb2

log = logging.getLogger(__name__)

# A part's two numbers (tag and varint each), and a chunk's tag and length prefix in the repeated field.
_PART_FIELDS_BYTES = 12
_REPEATED_OVERHEAD_BYTES = 6

# The statuses of a version the worker has not finished: a (re)delivered job picks it up.
WORKING = frozenset({Status.QUEUED, Status.PARSING, Status.CHUNKING})


class Pipeline:
    def __init__(
        self,
        *,
        sessions: Sessions,
        progress: Progress,
        settings: Settings,
        artifacts: Artifacts,
        notify_outbox: Callable[[], None],
        parser: Parser | None = None,
    ) -> None:
        self._sessions = sessions
        self._progress = progress
        self._settings = settings
        self._artifacts = artifacts
        self._notify_outbox = notify_outbox
        self._parser = parser or Parser()

    async def chunk_version(self, *, tenant_id: str, document_id: str, version: int) -> None:
        """QUEUED → PARSING → CHUNKING → INDEXING (or FAILED, with the stage and why): read one
        version into sections, chunk them and announce the chunks. A redelivery after a crash
        starts again from PARSING; nothing is written until the last step."""
        document_uuid = as_uuid(document_id)
        if document_uuid is None:
            log.error("dropped an ingest job with a malformed document id", extra={"fields": {"id": document_id}})
            return
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=document_uuid, for_update=True
            )
            if document is None or document.version != version or document.status not in WORKING:
                return
            content = await store.get_version_content(
                session=session, tenant_id=tenant_id, document_id=document_uuid, version=version
            )
            previous = await store.chunked_pieces(
                session=session, tenant_id=tenant_id, document_id=document_uuid, version=version
            )
            document = await store.set_status(
                session=session,
                tenant_id=tenant_id,
                document_id=document_uuid,
                status=Status.PARSING,
                message=f"reading the {document.content_type} file into sections",
            )
        if document is None:
            return
        await self._progress.publish(document)

        sections: list[Section] = []
        pieces: list[SectionChunk] = []
        stage, error = Status.PARSING, ""
        if content is None:
            error = "the document's content is missing"
        else:
            # The stored bytes read as the type the upload settled on (in a thread, unless the upload
            # just parsed them here). A refusal or a bug fails the document; anything else (the
            # database, NATS) raises and the job is redelivered.
            try:
                parsed = await self._parser.parse(content, filename=document.filename, declared=document.content_type)
                sections = parsed.sections
            except InvalidInput as refused:
                error = str(refused)
            except Exception:
                log.exception("parsing failed", extra={"fields": {"document_id": document_id}})
                error = "the document could not be read"
        if not error:
            advanced = await self._advance(
                tenant_id=tenant_id,
                document_id=document_uuid,
                version=version,
                status=Status.CHUNKING,
                total=len(sections),
                message=f"splitting {len(sections)} sections into chunks",
            )
            if advanced is None:
                return
            stage = Status.CHUNKING
            try:
                pieces = await asyncio.to_thread(
                    chunk_sections, sections, max_tokens=self._settings.chunk_max_tokens, previous=previous
                )
            except Exception:
                log.exception("chunking failed", extra={"fields": {"document_id": document_id}})
                error = "the document could not be split into chunks"
            if not error and not pieces:
                error = "the document has no text to index"

        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=document_uuid, for_update=True
            )
            if document is None or document.version != version or document.status != stage:
                return
            chunk_set = events_pb2.ChunksUpserted(
                tenant_id=tenant_id,
                collection_id=str(document.collection_id),
                document_id=str(document.id),
                version=version,
                document_title=document.title,
            )
            records = [
                to_proto(events_pb2.ChunkRecord, piece, chunk_id=str(chunk_id(document.id, piece.key)))
                for piece in pieces
            ]
            parts = [] if error else in_parts(chunk_set, records, max_bytes=self._settings.max_event_bytes)
            if not error and not parts:
                error = (
                    f"a chunk of the document is larger than one event may be ({self._settings.max_event_bytes} bytes)"
                )
            if error:
                document = await store.set_status(
                    session=session,
                    tenant_id=tenant_id,
                    document_id=document_uuid,
                    status=Status.FAILED,
                    error=error,
                    failed_stage=stage.lower(),
                    message=f"{stage.lower()} failed",
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
                    total=len(pieces),
                    message=f"retrieval is indexing {len(pieces)} chunks",
                )
                for upserted in parts:
                    await enqueue(
                        session=session,
                        table=outbox,
                        subject=CHUNKS_UPSERTED,
                        msg_id=chunks_msg_id(document_uuid, version, upserted.part),
                        message=upserted,
                    )
        if not error:
            self._notify_outbox()
        if document is not None:
            await self._progress.publish(document)

    async def _advance(
        self, *, tenant_id: str, document_id: uuid.UUID, version: int, status: Status, total: int, message: str
    ) -> DocumentRecord | None:
        """The next working stage, committed and announced; None when the version is no longer
        being worked on (deleted, superseded)."""
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=document_id, for_update=True
            )
            if document is None or document.version != version or document.status not in WORKING:
                return None
            document = await store.set_status(
                session=session,
                tenant_id=tenant_id,
                document_id=document_id,
                status=status,
                total=total,
                message=message,
            )
        if document is not None:
            await self._progress.publish(document)
        return document

    async def give_up(
        self,
        *,
        tenant_id: str,
        document_id: str,
        version: int,
        reason: str,
        what: str = "the ingest job",
        stages: frozenset[Status] = WORKING,
    ) -> None:
        """A job parked after failing again and again (or retrieval's indexing of the version, `what`
        says): its version is FAILED, in the stage it was in."""
        document_uuid = as_uuid(document_id)
        if document_uuid is None:
            return
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=document_uuid, for_update=True
            )
            if document is None or document.version != version or document.status not in stages:
                return
            # Still QUEUED: it failed before it could even start parsing.
            stage = Status.PARSING if document.status == Status.QUEUED else document.status
            document = await store.set_status(
                session=session,
                tenant_id=tenant_id,
                document_id=document_uuid,
                status=Status.FAILED,
                failed_stage=stage.lower(),
                error=f"{what} kept failing and was set aside for an operator: {reason}",
                message=f"{stage.lower()} failed",
            )
        if document is not None:
            await self._progress.publish(document)

    async def requeue(
        self, *, tenant_id: str, document_id: uuid.UUID, version: int, to: Status = Status.QUEUED
    ) -> bool:
        """An operator replays a parked job: its FAILED version goes back to QUEUED (or, for a parked
        chunk set retrieval gave up on, to INDEXING). False when the job is no longer the
        document's current version (the replay would do nothing)."""
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=document_id, for_update=True
            )
            if document is None or document.version != version:
                return False
            if document.status == Status.FAILED:
                document = await store.set_status(
                    session=session,
                    tenant_id=tenant_id,
                    document_id=document_id,
                    status=to,
                    message="replayed by an operator; waiting for "
                    + ("the ingest worker" if to == Status.QUEUED else "retrieval to index it"),
                )
        if document is not None:
            await self._progress.publish(document)
        return True

    async def mark_indexed(self, *, tenant_id: str, document_id: str, version: int) -> None:
        """INDEXING → READY (or ANALYZING, its first artifact job queued), once retrieval says the
        version is searchable."""
        document_uuid = as_uuid(document_id)
        if document_uuid is None:
            log.error("dropped a ChunksIndexed with a malformed document id", extra={"fields": {"id": document_id}})
            return
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=document_uuid, for_update=True
            )
            # Another version's news, a deleted document, or a redelivery after we already moved on.
            if document is None or document.version != version or document.status != Status.INDEXING:
                return
            document = await self._artifacts.after_indexing(session=session, document=document)
        self._notify_outbox()
        if document is not None:
            await self._progress.publish(document)


def in_parts(
    chunk_set: events_pb2.ChunksUpserted, records: Sequence[events_pb2.ChunkRecord], *, max_bytes: int
) -> list[events_pb2.ChunksUpserted]:
    """The version's chunks as one ChunksUpserted when they fit in `max_bytes`, else as parts that
    each do (numbered, in order); [] when a single chunk cannot fit in any."""
    whole = events_pb2.ChunksUpserted()
    whole.CopyFrom(chunk_set)
    whole.chunks.extend(records)
    if whole.ByteSize() <= max_bytes:
        return [whole]
    # Room for the part numbers the parts will carry, beside the version's own fields.
    room = max_bytes - chunk_set.ByteSize() - _PART_FIELDS_BYTES
    groups: list[list[events_pb2.ChunkRecord]] = [[]]
    size = 0
    for record in records:
        # A repeated field's element costs its length prefix and tag besides itself.
        cost = record.ByteSize() + _REPEATED_OVERHEAD_BYTES
        if cost > room:
            return []
        if size + cost > room:
            groups.append([])
            size = 0
        groups[-1].append(record)
        size += cost
    parts = []
    for number, group in enumerate(groups, start=1):
        part = events_pb2.ChunksUpserted(part=number, parts=len(groups))
        part.MergeFrom(chunk_set)
        part.chunks.extend(group)
        parts.append(part)
    return parts
