"""Dead letters: the messages any service's consumer gave up on, parked on
parked.<stream>.<consumer> (kit.bus) with the reason, and an operator's replay of one.

Ingestion serves the operators' API for every service (ListDeadLetters, ReplayDeadLetter): the
PARKED stream is shared, and each parked message's original subject says what it carries, so its
tenant (and document, if any) can be read. Callers see only their own tenant's messages: a
sequence of another tenant's is NOT_FOUND.

A replay puts the message back on its subject for a fresh round of deliveries. A parked ingest
job's document is FAILED meanwhile (Pipeline.give_up) and goes back to QUEUED first; a parked
chunk set (retrieval gave up indexing it, the document FAILED at `indexing`) goes back to INDEXING.
"""

from dataclasses import dataclass
from datetime import datetime

from google.protobuf.message import DecodeError, Message
from nats.js import JetStreamContext

from parley.ingestion.models import Status
from parley.ingestion.pipeline import Pipeline
from parley.kit import bus
from parley.kit.contracts import (
    ANALYZE_JOBS,
    CHUNKS_DELETED,
    CHUNKS_INDEXED,
    CHUNKS_UPSERTED,
    SUMMARIZE_JOBS,
    USAGE_RECORDED,
)
from parley.kit.errors import FailedPrecondition, NotFound
from parley.kit.ids import as_uuid
from parley.v1 import chat_pb2, events_pb2

INGEST_JOB_PREFIX = "jobs.ingest."

# What a message published on each subject is (every one names its tenant).
_PAYLOADS: dict[str, type[Message]] = {
    ANALYZE_JOBS: events_pb2.AnalyzeJob,
    SUMMARIZE_JOBS: chat_pb2.SummarizeJob,
    CHUNKS_UPSERTED: events_pb2.ChunksUpserted,
    CHUNKS_DELETED: events_pb2.ChunksDeleted,
    CHUNKS_INDEXED: events_pb2.ChunksIndexed,
    USAGE_RECORDED: events_pb2.UsageRecorded,
}


def _payload_type(subject: str) -> type[Message] | None:
    if subject.startswith(INGEST_JOB_PREFIX):
        return events_pb2.IngestJob
    return _PAYLOADS.get(subject)


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    seq: int
    consumer: str  # the durable that gave up on it
    document_id: str  # "" when the message is not about a document (usage, summaries)
    version: int
    subject: str
    deliveries: int
    reason: str
    parked_at: datetime


@dataclass(frozen=True, slots=True)
class _Parked:
    record: DeadLetterRecord
    message: bus.ParkedMessage


def _read(parked: bus.ParkedMessage, *, tenant_id: str) -> _Parked | None:
    """The parked message as this tenant's, or None when it is another's or cannot be read."""
    payload_type = _payload_type(parked.subject)
    if payload_type is None:
        return None
    try:
        payload = payload_type.FromString(parked.data)
    except DecodeError:
        return None
    if getattr(payload, "tenant_id", None) != tenant_id:
        return None
    record = DeadLetterRecord(
        seq=parked.seq,
        consumer=parked.durable,
        document_id=str(getattr(payload, "document_id", "")),
        version=int(getattr(payload, "version", 0)),
        subject=parked.subject,
        deliveries=parked.deliveries,
        reason=parked.reason,
        parked_at=parked.parked_at,
    )
    return _Parked(record=record, message=parked)


class DeadLetters:
    def __init__(self, *, js: JetStreamContext, pipeline: Pipeline) -> None:
        self._js = js
        self._pipeline = pipeline

    async def list(self, *, tenant_id: str) -> list[DeadLetterRecord]:
        parked = await bus.all_parked(self._js)
        return [read.record for read in (_read(message, tenant_id=tenant_id) for message in parked) if read]

    async def replay(self, *, tenant_id: str, seq: int) -> DeadLetterRecord:
        parked = await bus.get_parked(self._js, seq) if seq > 0 else None
        read = None if parked is None else _read(parked, tenant_id=tenant_id)
        if read is None:
            raise NotFound(f"no parked message {seq}")
        back_to = _document_state_for_replay(read.record.subject)
        document_id = as_uuid(read.record.document_id)
        # The document first: a message redelivered to a FAILED version would be a no-op.
        if (
            back_to is not None
            and document_id is not None
            and not await self._pipeline.requeue(
                tenant_id=tenant_id, document_id=document_id, version=read.record.version, to=back_to
            )
        ):
            raise FailedPrecondition(
                f"parked message {seq} is for version {read.record.version}, which is no longer the document's "
                "current version; upload it again instead"
            )
        await bus.replay_parked(self._js, read.message)
        return read.record


def _document_state_for_replay(subject: str) -> Status | None:
    """Where a replayed message's document goes first, if anywhere."""
    if subject.startswith(INGEST_JOB_PREFIX):
        return Status.QUEUED
    if subject == CHUNKS_UPSERTED:
        return Status.INDEXING
    return None
