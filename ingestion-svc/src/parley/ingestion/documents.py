"""Documents: the streamed upload and its checks, the ingest job that chunks a version, the
indexed event that makes it READY, deletion, and watching a document's progress.

A document version moves QUEUED → CHUNKING → INDEXING → READY (or FAILED); every step is
one transaction, and every event it announces is written to the outbox in that transaction.
"""

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from parley.ingestion import events, store
from parley.ingestion.catalog import refuse_nul
from parley.ingestion.chunking import Chunk, chunk_text, first_heading
from parley.ingestion.config import Settings
from parley.ingestion.ids import chunk_id, new_id
from parley.ingestion.models import Status, outbox
from parley.ingestion.store import DocumentRecord, SectionRecord
from parley.kit.db import Sessions
from parley.kit.errors import InvalidInput, NotFound
from parley.kit.ids import as_uuid, parse_id
from parley.kit.outbox import enqueue
from parley.kit.paging import Cursor, decode_token, encode_token, page_size
from parley.v1 import events_pb2, ingestion_pb2

log = logging.getLogger(__name__)

MARKDOWN = "text/markdown"
PLAIN = "text/plain"
ALLOWED_TYPES = (PLAIN, MARKDOWN)
SUFFIX_TYPES = {".md": MARKDOWN, ".markdown": MARKDOWN, ".txt": PLAIN}
MAX_TITLE_CHARS = 300
UNTITLED = "Untitled"


@dataclass(frozen=True, slots=True)
class UploadHeader:
    collection_id: str
    title: str
    content_type: str
    filename: str


UploadPart = UploadHeader | bytes


@dataclass(frozen=True, slots=True)
class Page:
    documents: list[DocumentRecord]
    next_page_token: str


def resolve_content_type(content_type: str, filename: str) -> str:
    """The declared type (parameters such as charset ignored), else the one the filename implies."""
    declared = content_type.split(";", 1)[0].strip().lower()
    if not declared:
        declared = SUFFIX_TYPES.get(PurePosixPath(filename.strip()).suffix.lower(), "")
        if not declared:
            raise InvalidInput(
                f"cannot tell the content type of {filename!r}; set content_type to one of {', '.join(ALLOWED_TYPES)}"
            )
    if declared not in ALLOWED_TYPES:
        raise InvalidInput(f"content type {declared!r} is not supported; use one of {', '.join(ALLOWED_TYPES)}")
    return declared


def check_title(title: str) -> str:
    title = refuse_nul(title, field="title").strip()
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidInput(f"title is longer than {MAX_TITLE_CHARS} characters")
    return title


def default_title(text: str, *, content_type: str, filename: str) -> str:
    heading = first_heading(text) if content_type == MARKDOWN else ""
    stem = PurePosixPath(filename.strip().replace("\\", "/")).stem.strip() if filename.strip() else ""
    return (heading or stem or UNTITLED)[:MAX_TITLE_CHARS]


def decode_content(data: bytes) -> str:
    try:
        # utf-8-sig: a byte-order mark some editors write is not part of the text.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"the content is not valid UTF-8 (byte {error.start})") from None
    if "\x00" in text:
        raise InvalidInput("the content contains NUL bytes; only text documents are accepted")
    if not text.strip():
        raise InvalidInput("the document is empty")
    return text


async def read_content(parts: AsyncIterator[UploadPart], *, max_bytes: int) -> bytes:
    """The content pieces after the header, refused as soon as they pass `max_bytes`."""
    pieces: list[bytes] = []
    size = 0
    async for part in parts:
        if isinstance(part, UploadHeader):
            raise InvalidInput("only the first message may carry a header")
        size += len(part)
        if size > max_bytes:
            raise InvalidInput(f"the document is larger than {max_bytes} bytes")
        pieces.append(part)
    return b"".join(pieces)


class Documents:
    def __init__(
        self,
        *,
        sessions: Sessions,
        nc: NatsClient,
        js: JetStreamContext,
        settings: Settings,
        notify_outbox: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._nc = nc
        self._js = js
        self._settings = settings
        self._notify_outbox = notify_outbox

    async def ingest(self, *, tenant_id: str, parts: AsyncIterator[UploadPart]) -> DocumentRecord:
        header = await anext(parts, None)
        if not isinstance(header, UploadHeader):
            raise InvalidInput("the first message of an upload must carry the header")
        collection_id = parse_id(header.collection_id, kind="collection")
        refuse_nul(header.filename, field="filename")
        content_type = resolve_content_type(header.content_type, header.filename)
        title = check_title(header.title)
        async with self._sessions() as session:
            # Before reading megabytes of content for a collection that is not there.
            if not await store.collection_exists(session=session, tenant_id=tenant_id, collection_id=collection_id):
                raise NotFound(f"collection {header.collection_id!r} not found")

        data = await read_content(parts, max_bytes=self._settings.max_document_bytes)
        text = decode_content(data)
        title = title or default_title(text, content_type=content_type, filename=header.filename)
        sha256 = hashlib.sha256(data).hexdigest()

        async with self._sessions() as session, session.begin():
            if not await store.collection_exists(session=session, tenant_id=tenant_id, collection_id=collection_id):
                raise NotFound(f"collection {header.collection_id!r} not found")
            existing = await store.find_document_by_content(
                session=session, tenant_id=tenant_id, collection_id=collection_id, title=title, content_sha256=sha256
            )
            if existing is not None:
                return existing
            document = await store.insert_document(
                session=session,
                tenant_id=tenant_id,
                document_id=new_id(),
                collection_id=collection_id,
                title=title,
                content_type=content_type,
                filename=header.filename.strip(),
                status=Status.QUEUED,
                content=text,
                size_bytes=len(data),
                content_sha256=sha256,
            )
            if document is None:
                # An identical upload committed between our check and our insert.
                existing = await store.find_document_by_content(
                    session=session,
                    tenant_id=tenant_id,
                    collection_id=collection_id,
                    title=title,
                    content_sha256=sha256,
                )
                if existing is None:
                    raise AssertionError("the conflicting document vanished")
                return existing
            await enqueue(
                session=session,
                table=outbox,
                subject=events.INGEST_SUBJECT,
                msg_id=events.ingest_msg_id(document.id, document.version),
                message=events_pb2.IngestJob(
                    tenant_id=tenant_id, document_id=str(document.id), version=document.version
                ),
            )
        self._notify_outbox()
        await events.publish_progress(self._js, document)
        return document

    async def get(self, *, tenant_id: str, document_id: str) -> DocumentRecord:
        async with self._sessions() as session:
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=parse_id(document_id, kind="document")
            )
        if document is None:
            raise NotFound(f"document {document_id!r} not found")
        return document

    async def list(self, *, tenant_id: str, collection_id: str, size: int, page_token: str) -> Page:
        collection_uuid = parse_id(collection_id, kind="collection")
        limit = page_size(size)
        after = decode_token(page_token)
        async with self._sessions() as session:
            if not await store.collection_exists(session=session, tenant_id=tenant_id, collection_id=collection_uuid):
                raise NotFound(f"collection {collection_id!r} not found")
            rows = await store.list_documents(
                session=session, tenant_id=tenant_id, collection_id=collection_uuid, limit=limit + 1, after=after
            )
        page, more = rows[:limit], len(rows) > limit
        token = encode_token(Cursor(at=page[-1].created_at, id=page[-1].id)) if more else ""
        return Page(documents=page, next_page_token=token)

    async def delete(self, *, tenant_id: str, document_id: str) -> None:
        document_uuid = parse_id(document_id, kind="document")
        async with self._sessions() as session, session.begin():
            # Deleting first takes the row lock, so a worker mid-way finishes before our event is queued
            # and retrieval hears "upserted" before "deleted", never after.
            document = await store.delete_document(session=session, tenant_id=tenant_id, document_id=document_uuid)
            if document is None:
                raise NotFound(f"document {document_id!r} not found")
            await enqueue(
                session=session,
                table=outbox,
                subject=events.CHUNKS_DELETED,
                msg_id=events.document_deleted_msg_id(document.id),
                message=events_pb2.ChunksDeleted(
                    tenant_id=tenant_id, collection_id=str(document.collection_id), document_id=str(document.id)
                ),
            )
        self._notify_outbox()

    async def section(self, *, tenant_id: str, document_id: str, ordinal: int) -> SectionRecord:
        document = await self.get(tenant_id=tenant_id, document_id=document_id)
        async with self._sessions() as session:
            section = await store.get_section(
                session=session, tenant_id=tenant_id, document_id=document.id, version=document.version, ordinal=ordinal
            )
        if section is None:
            raise NotFound(f"document {document_id!r} has no section {ordinal}")
        return section

    async def watch(self, *, tenant_id: str, document_id: str) -> AsyncIterator[ingestion_pb2.DocumentProgress]:
        """The current state, then each change, until READY or FAILED."""
        document_uuid = parse_id(document_id, kind="document")
        # Subscribe before reading the row, so no change can fall between the two.
        subscription = await self._nc.subscribe(events.progress_subject(document_uuid))
        try:
            async with self._sessions() as session:
                document = await store.get_document(session=session, tenant_id=tenant_id, document_id=document_uuid)
            if document is None:
                raise NotFound(f"document {document_id!r} not found")
            current = events.progress_message(document)
            yield current
            last = current.status
            if last in events.TERMINAL_PROTO:
                return
            async for message in subscription.messages:
                try:
                    progress = ingestion_pb2.DocumentProgress.FromString(message.data)
                except DecodeError:
                    continue  # a stray message on the subject is not the watcher's problem
                # Events published before our read arrive after it; statuses only move forward.
                if progress.tenant_id != tenant_id or progress.status <= last:
                    continue
                yield progress
                last = progress.status
                if last in events.TERMINAL_PROTO:
                    return
        finally:
            await subscription.unsubscribe()

    async def process_job(self, *, tenant_id: str, document_id: str, version: int) -> None:
        """Chunk one version and announce its chunks. Redelivery-safe: a job already done, for a
        deleted document or for a superseded version finishes without doing anything."""
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
            started = document.status == Status.QUEUED
            if started:
                document = await store.set_status(
                    session=session, tenant_id=tenant_id, document_id=document_uuid, status=Status.CHUNKING
                )
        if started and document is not None:
            await events.publish_progress(self._js, document)

        pieces: list[Chunk] = []
        error = ""
        if content is None:
            error = "the document's content is missing"
        else:
            try:
                # Tokenizing megabytes blocks for a while; keep the loop free for other consumers and RPCs.
                pieces = await asyncio.to_thread(
                    chunk_text,
                    content,
                    markdown=document is not None and document.content_type == MARKDOWN,
                    max_tokens=self._settings.chunk_max_tokens,
                )
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
                    events_pb2.ChunkRecord(
                        chunk_id=str(chunk_id(document.id, version, piece.ordinal)),
                        ordinal=piece.ordinal,
                        heading=piece.heading,
                        text=piece.text,
                        token_count=piece.token_count,
                        content_hash=piece.content_hash,
                    )
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
                await store.replace_chunks(
                    session=session, tenant_id=tenant_id, document_id=document_uuid, version=version, new_chunks=pieces
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
                    subject=events.CHUNKS_UPSERTED,
                    msg_id=events.chunks_msg_id(document_uuid, version),
                    message=upserted,
                )
        if not error:
            self._notify_outbox()
        if document is not None:
            await events.publish_progress(self._js, document)

    async def mark_indexed(self, *, tenant_id: str, document_id: str, version: int) -> None:
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
            await events.publish_progress(self._js, document)
