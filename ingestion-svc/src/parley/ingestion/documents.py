"""Documents: the streamed upload and its checks, reading them, and deleting them.

An upload stores version 1 as QUEUED and, in the same transaction, queues its IngestJob in the
outbox; the pipeline (pipeline.py) takes it from there.
"""

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from parley.ingestion import store
from parley.ingestion.catalog import refuse_nul
from parley.ingestion.chunking import first_heading
from parley.ingestion.config import Settings
from parley.ingestion.ids import new_id
from parley.ingestion.models import Status, outbox
from parley.ingestion.progress import Progress
from parley.ingestion.store import DocumentRecord, SectionRecord
from parley.kit.contracts import (
    CHUNKS_DELETED,
    DOCUMENT_TYPES,
    MARKDOWN,
    MAX_TITLE_CHARS,
    document_deleted_msg_id,
    document_type_for,
    ingest_msg_id,
    ingest_subject,
)
from parley.kit.db import Sessions
from parley.kit.errors import InvalidInput, NotFound
from parley.kit.ids import parse_id
from parley.kit.outbox import enqueue
from parley.kit.paging import Cursor, decode_token, encode_token, page_size
from parley.v1 import events_pb2

ACCEPTED = ", ".join(DOCUMENT_TYPES)
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
    """The declared type when it is one we accept (parameters such as charset ignored), else the one
    the file name implies: browsers and curl declare `application/octet-stream` for a `.md` file.
    This is the one place that decides; the gateway passes both through."""
    declared = content_type.split(";", 1)[0].strip().lower()
    if declared in DOCUMENT_TYPES:
        return declared
    implied = document_type_for(filename)
    if implied is not None:
        return implied
    if declared:
        raise InvalidInput(f"content type {declared!r} is not supported; use one of {ACCEPTED}")
    raise InvalidInput(f"cannot tell the content type of {filename!r}; set content_type to one of {ACCEPTED}")


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
        progress: Progress,
        settings: Settings,
        notify_outbox: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._progress = progress
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
                subject=ingest_subject(),
                msg_id=ingest_msg_id(document.id, document.version),
                message=events_pb2.IngestJob(
                    tenant_id=tenant_id, document_id=str(document.id), version=document.version
                ),
            )
        self._notify_outbox()
        await self._progress.publish(document)
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
                subject=CHUNKS_DELETED,
                msg_id=document_deleted_msg_id(document.id),
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
