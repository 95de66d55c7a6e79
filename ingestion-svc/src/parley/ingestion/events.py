"""The subjects ingestion publishes and consumes, their message ids, and its two consumers.

publishes  jobs.ingest.normal       IngestJob          outbox, with the document
           docs.chunks.upserted     ChunksUpserted     outbox, with the chunks
           docs.chunks.deleted      ChunksDeleted      outbox, with the deletion
           progress.document.<id>   DocumentProgress   plain publish after each commit (best effort)
consumes   jobs.ingest.>            IngestJob          durable ingestion-ingest (stream JOBS)
           docs.chunks.indexed      ChunksIndexed      durable ingestion-indexed (stream DOCS)
"""

import logging
import uuid
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from parley.ingestion.models import Status
from parley.ingestion.store import DocumentRecord
from parley.kit import bus
from parley.kit.timestamps import to_timestamp
from parley.v1 import events_pb2, ingestion_pb2

if TYPE_CHECKING:
    from parley.ingestion.documents import Documents

log = logging.getLogger(__name__)

INGEST_SUBJECT = "jobs.ingest.normal"
INGEST_FILTER = "jobs.ingest.>"
CHUNKS_UPSERTED = "docs.chunks.upserted"
CHUNKS_DELETED = "docs.chunks.deleted"
CHUNKS_INDEXED = "docs.chunks.indexed"

INGEST_DURABLE = "ingestion-ingest"
INDEXED_DURABLE = "ingestion-indexed"

STATUS_PROTO: dict[str, "ingestion_pb2.DocumentStatus"] = {
    Status.QUEUED: ingestion_pb2.DOCUMENT_STATUS_QUEUED,
    Status.CHUNKING: ingestion_pb2.DOCUMENT_STATUS_CHUNKING,
    Status.INDEXING: ingestion_pb2.DOCUMENT_STATUS_INDEXING,
    Status.READY: ingestion_pb2.DOCUMENT_STATUS_READY,
    Status.FAILED: ingestion_pb2.DOCUMENT_STATUS_FAILED,
}
TERMINAL_PROTO = frozenset({ingestion_pb2.DOCUMENT_STATUS_READY, ingestion_pb2.DOCUMENT_STATUS_FAILED})


def progress_subject(document_id: uuid.UUID | str) -> str:
    return f"progress.document.{document_id}"


def ingest_msg_id(document_id: uuid.UUID, version: int) -> str:
    return f"ingest:{document_id}:{version}"


def chunks_msg_id(document_id: uuid.UUID, version: int) -> str:
    return f"chunks:{document_id}:{version}"


def document_deleted_msg_id(document_id: uuid.UUID) -> str:
    return f"deleted:document:{document_id}"


def collection_deleted_msg_id(collection_id: uuid.UUID) -> str:
    return f"deleted:collection:{collection_id}"


def progress_message(document: DocumentRecord) -> ingestion_pb2.DocumentProgress:
    return ingestion_pb2.DocumentProgress(
        tenant_id=document.tenant_id,
        document_id=str(document.id),
        collection_id=str(document.collection_id),
        status=STATUS_PROTO[document.status],
        chunk_count=document.chunk_count,
        error=document.error,
        at=to_timestamp(document.updated_at),
    )


async def publish_progress(js: JetStreamContext, document: DocumentRecord) -> None:
    """Progress is a convenience for watchers; the row is the truth. A failure here must not
    fail (and so redeliver) work that is already committed."""
    message = progress_message(document)
    try:
        await js.publish(
            progress_subject(document.id),
            message.SerializeToString(),
            headers={"Nats-Msg-Id": f"progress:{document.id}:{document.version}:{document.status}"},
        )
    except Exception:
        log.warning("could not publish progress", exc_info=True, extra={"fields": {"document_id": str(document.id)}})


def consumers(
    documents: "Documents", *, ingest_durable: str = INGEST_DURABLE, indexed_durable: str = INDEXED_DURABLE
) -> list[bus.Consumer]:
    async def on_ingest_job(message: Msg) -> None:
        try:
            job = events_pb2.IngestJob.FromString(message.data)
        except DecodeError:
            # Redelivering a payload we cannot read would only park it later; drop it now, loudly.
            log.error("dropped an unreadable IngestJob", extra={"fields": {"subject": message.subject}})
            return
        await documents.process_job(tenant_id=job.tenant_id, document_id=job.document_id, version=job.version)

    async def on_chunks_indexed(message: Msg) -> None:
        try:
            event = events_pb2.ChunksIndexed.FromString(message.data)
        except DecodeError:
            log.error("dropped an unreadable ChunksIndexed", extra={"fields": {"subject": message.subject}})
            return
        await documents.mark_indexed(tenant_id=event.tenant_id, document_id=event.document_id, version=event.version)

    return [
        # Chunking a large document takes a while; give it time before JetStream redelivers.
        bus.Consumer(
            stream="JOBS",
            durable=ingest_durable,
            subject=INGEST_FILTER,
            handler=on_ingest_job,
            ack_wait_seconds=300.0,
            batch=1,
        ),
        bus.Consumer(stream="DOCS", durable=indexed_durable, subject=CHUNKS_INDEXED, handler=on_chunks_indexed),
    ]
