"""Documents: the streamed upload and its checks, reading them (and their sections and a
screenplay's reports), and deleting them.

An upload is parsed (formats.py) before anything is stored, so a file we cannot read is refused
with the reason and leaves nothing behind; then version 1 is stored as QUEUED with its bytes as
uploaded and, in the same transaction, its IngestJob queued in the outbox; the pipeline
(pipeline.py) takes it from there.
"""

import base64
import binascii
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from sqlalchemy.ext.asyncio import AsyncSession

from parley.ingestion import store
from parley.ingestion.catalog import refuse_nul
from parley.ingestion.config import Settings
from parley.ingestion.formats import ParsedDocument, Parser
from parley.ingestion.ids import new_id
from parley.ingestion.models import Status, outbox
from parley.ingestion.progress import Progress
from parley.ingestion.screenplay_reports import (
    CharacterReport,
    PacingReport,
    characters_report,
    is_screenplay,
    pacing_report,
)
from parley.ingestion.sections import SectionChanges, compare_sections
from parley.ingestion.store import DocumentRecord, SectionRecord
from parley.kit.contracts import (
    CHUNKS_DELETED,
    INGEST_PRIORITIES,
    MAX_TITLE_CHARS,
    PDF,
    SCREENPLAY_TYPES,
    document_deleted_msg_id,
    ingest_msg_id,
    ingest_subject,
)
from parley.kit.db import Sessions
from parley.kit.errors import Conflict, FailedPrecondition, InvalidInput, NotFound
from parley.kit.ids import parse_id
from parley.kit.outbox import enqueue
from parley.kit.paging import Cursor, decode_token, encode_token, page_size
from parley.v1 import events_pb2

UNTITLED = "Untitled"
# What browsers and curl declare for a type they do not know: the content and the name decide.
UNDECLARED = frozenset({"", "application/octet-stream", "binary/octet-stream"})


@dataclass(frozen=True, slots=True)
class UploadHeader:
    collection_id: str
    title: str
    content_type: str
    filename: str
    priority: str


@dataclass(frozen=True, slots=True)
class VersionHeader:
    document_id: str
    content_type: str
    filename: str
    priority: str


UploadPart = UploadHeader | VersionHeader | bytes


@dataclass(frozen=True, slots=True)
class Update:
    document: DocumentRecord
    outcome: str  # NEW_VERSION or UNCHANGED
    sections: SectionChanges


NEW_VERSION = "new_version"
UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class Page:
    documents: list[DocumentRecord]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class SectionPage:
    sections: list[SectionRecord]
    next_page_token: str


def declared_type(content_type: str) -> str | None:
    """The type the caller declared, or None when it declared only "some bytes"."""
    return None if content_type.split(";", 1)[0].strip().lower() in UNDECLARED else content_type


def job_priority(priority: str) -> str:
    """The queue a job goes to: urgent, normal (when none is named) or low."""
    priority = priority.strip().lower() or "normal"
    if priority not in INGEST_PRIORITIES:
        raise InvalidInput(f"priority must be one of {', '.join(INGEST_PRIORITIES)}")
    return priority


def queued_message(priority: str) -> str:
    return f"waiting for the ingest worker ({priority} priority)"


def check_title(title: str) -> str:
    title = refuse_nul(title, field="title").strip()
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidInput(f"title is longer than {MAX_TITLE_CHARS} characters")
    return title


def default_title(parsed: ParsedDocument, *, filename: str) -> str:
    """The document's own title, else its first heading, else the upload's name tidied
    (`mr-and-mr-charles.fountain` -> "Mr And Mr Charles"). A script's headings are structure
    (`# ACT ONE`, scene headings), never its title."""
    screenplay = is_screenplay(parsed.format, parsed.sections)
    heading = next(
        (section.heading_path[0] for section in parsed.sections if section.heading_path and section.scene is None),
        "",
    )
    return (parsed.title.strip() or ("" if screenplay else heading) or name_from_file(filename) or UNTITLED)[
        :MAX_TITLE_CHARS
    ]


def name_from_file(filename: str) -> str:
    """A file's stem as a person would write it: separators become spaces, words capitalised
    (only those in lower case, so "NASA-report" keeps its acronym)."""
    stem = PurePosixPath(filename.strip().replace("\\", "/")).stem if filename.strip() else ""
    words = re.split(r"[\s_\-.]+", stem)
    return " ".join(word[:1].upper() + word[1:] if word.islower() else word for word in words if word)


async def read_content(parts: AsyncIterator[UploadPart], *, max_bytes: int) -> bytes:
    """The content pieces after the header, refused as soon as they pass `max_bytes`."""
    pieces: list[bytes] = []
    size = 0
    async for part in parts:
        if not isinstance(part, bytes):
            raise InvalidInput("only the first message may carry a header")
        size += len(part)
        if size > max_bytes:
            raise InvalidInput(f"the document is larger than {max_bytes} bytes")
        pieces.append(part)
    return b"".join(pieces)


async def queue_ingest_job(*, session: AsyncSession, document: DocumentRecord, priority: str) -> None:
    """The job that parses and chunks a stored version, in the transaction that stored it."""
    await enqueue(
        session=session,
        table=outbox,
        subject=ingest_subject(priority),
        msg_id=ingest_msg_id(document.id, document.version),
        message=events_pb2.IngestJob(
            tenant_id=document.tenant_id, document_id=str(document.id), version=document.version
        ),
    )


class Documents:
    def __init__(
        self,
        *,
        sessions: Sessions,
        progress: Progress,
        settings: Settings,
        notify_outbox: Callable[[], None],
        parser: Parser | None = None,
    ) -> None:
        self._sessions = sessions
        self._progress = progress
        self._settings = settings
        self._notify_outbox = notify_outbox
        self._parser = parser or Parser()

    async def ingest(self, *, tenant_id: str, parts: AsyncIterator[UploadPart]) -> DocumentRecord:
        header = await anext(parts, None)
        if not isinstance(header, UploadHeader):
            raise InvalidInput("the first message of an upload must carry the header")
        collection_id = parse_id(header.collection_id, kind="collection")
        refuse_nul(header.filename, field="filename")
        title = check_title(header.title)
        priority = job_priority(header.priority)
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            # Before reading megabytes of content for a collection that is not there.
            if not await store.collection_exists(session=session, tenant_id=tenant_id, collection_id=collection_id):
                raise NotFound(f"collection {header.collection_id!r} not found")

        data = await read_content(parts, max_bytes=self._settings.max_document_bytes)
        # The check that refuses what cannot be read before anything is stored; the worker takes
        # the sections from the parser rather than parsing again.
        sha256 = hashlib.sha256(data).hexdigest()
        parsed = await self._parser.parse(
            data, filename=header.filename, declared=declared_type(header.content_type), sha256=sha256
        )
        title = title or default_title(parsed, filename=header.filename)

        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
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
                content_type=parsed.format,
                filename=header.filename.strip(),
                status=Status.QUEUED,
                content=data,
                size_bytes=len(data),
                content_sha256=sha256,
                message=queued_message(priority),
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
            await queue_ingest_job(session=session, document=document, priority=priority)
        self._notify_outbox()
        await self._progress.publish(document)
        return document

    async def update(self, *, tenant_id: str, parts: AsyncIterator[UploadPart]) -> Update:
        """A new version under the same id, parsed before it is stored like an upload, and how its
        sections compare with the current ones. The same bytes again make no version."""
        header = await anext(parts, None)
        if not isinstance(header, VersionHeader):
            raise InvalidInput("the first message of a new version must carry the header")
        refuse_nul(header.filename, field="filename")
        priority = job_priority(header.priority)
        current = await self.get(tenant_id=tenant_id, document_id=header.document_id)
        data = await read_content(parts, max_bytes=self._settings.max_document_bytes)
        filename = header.filename.strip() or current.filename
        sha256 = hashlib.sha256(data).hexdigest()
        parsed = await self._parser.parse(
            data, filename=filename, declared=declared_type(header.content_type), sha256=sha256
        )
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=current.id, for_update=True
            )
            if document is None:
                raise NotFound(f"document {header.document_id!r} not found")
            held = await store.latest_sections(session=session, tenant_id=tenant_id, document_id=document.id)
            changes = compare_sections(
                [(section.heading_path, section.content_sha256) for section in held],
                [(section.heading_path, section.content_sha256) for section in parsed.sections],
            )
            if sha256 == document.content_sha256:
                return Update(document=document, outcome=UNCHANGED, sections=changes)
            twin = await store.find_document_by_content(
                session=session,
                tenant_id=tenant_id,
                collection_id=document.collection_id,
                title=document.title,
                content_sha256=sha256,
            )
            if twin is not None:
                raise Conflict(f"document {str(twin.id)!r} in this collection already has this title and content")
            document = await store.add_version(
                session=session,
                tenant_id=tenant_id,
                document=document,
                content=data,
                content_sha256=sha256,
                content_type=parsed.format,
                filename=filename,
                message=queued_message(priority),
            )
            await queue_ingest_job(session=session, document=document, priority=priority)
        self._notify_outbox()
        await self._progress.publish(document)
        return Update(document=document, outcome=NEW_VERSION, sections=changes)

    async def get(self, *, tenant_id: str, document_id: str) -> DocumentRecord:
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
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
            await store.enter_tenant(session=session, tenant_id=tenant_id)
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
            await store.enter_tenant(session=session, tenant_id=tenant_id)
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
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            section = await store.get_section(
                session=session, tenant_id=tenant_id, document_id=document.id, version=document.version, ordinal=ordinal
            )
        if section is None:
            raise NotFound(f"document {document_id!r} has no section {ordinal}")
        return section

    async def sections(self, *, tenant_id: str, document_id: str, size: int, page_token: str) -> SectionPage:
        """The current version's sections in order; empty until the worker has parsed it."""
        document = await self.get(tenant_id=tenant_id, document_id=document_id)
        limit = page_size(size)
        after = _decode_section_token(page_token, version=document.version)
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            rows = await store.list_sections(
                session=session,
                tenant_id=tenant_id,
                document_id=document.id,
                version=document.version,
                after_ordinal=after,
                limit=limit + 1,
            )
        page, more = rows[:limit], len(rows) > limit
        token = _encode_section_token(document.version, page[-1].ordinal) if more else ""
        return SectionPage(sections=page, next_page_token=token)

    async def characters(self, *, tenant_id: str, document_id: str) -> Sequence[CharacterReport]:
        return characters_report(await self._scenes(tenant_id=tenant_id, document_id=document_id))

    async def pacing(self, *, tenant_id: str, document_id: str) -> PacingReport:
        return pacing_report(await self._scenes(tenant_id=tenant_id, document_id=document_id))

    async def _scenes(self, *, tenant_id: str, document_id: str) -> Sequence[SectionRecord]:
        """A screenplay's stored scene sections: its reports are counted from them, never re-parsed.
        A PDF is a screenplay when it was read as one (it has scenes)."""
        document = await self.get(tenant_id=tenant_id, document_id=document_id)
        if document.content_type not in SCREENPLAY_TYPES | {PDF}:
            raise FailedPrecondition(
                f"document {document_id!r} is {document.content_type}, not a screenplay "
                f"(reports are for {', '.join(sorted(SCREENPLAY_TYPES))} and PDFs of scripts)"
            )
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            scenes = await store.list_sections(
                session=session,
                tenant_id=tenant_id,
                document_id=document.id,
                version=document.version,
                scenes_only=True,
            )
        if not scenes and document.status in (Status.QUEUED, Status.PARSING, Status.CHUNKING):
            raise FailedPrecondition(f"document {document_id!r} is not parsed yet ({document.status.lower()})")
        if not scenes and document.content_type == PDF:
            raise FailedPrecondition(f"document {document_id!r} is a PDF that does not read as a screenplay")
        return scenes


def _encode_section_token(version: int, ordinal: int) -> str:
    raw = json.dumps({"v": version, "o": ordinal}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_section_token(token: str, *, version: int) -> int:
    """The ordinal the next page starts after (-1 for the first page)."""
    if not token:
        return -1
    try:
        fields = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        token_version, ordinal = int(fields["v"]), int(fields["o"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidInput("page_token is not one this service issued") from None
    if token_version != version:
        raise FailedPrecondition("the document has a new version since this page token; list its sections again")
    return ordinal
