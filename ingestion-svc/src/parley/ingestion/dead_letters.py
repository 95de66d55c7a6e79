"""Dead letters: ingest jobs that kept failing, parked on parked.JOBS.<consumer> (kit.bus) with
the reason, and an operator's replay of one.

A parked job's document is FAILED meanwhile (Pipeline.give_up); a replay puts the document back
to QUEUED and the job back on the queue it came from, for a fresh round of deliveries. Callers
see only their own tenant's jobs: a sequence of another tenant's is NOT_FOUND.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.message import DecodeError
from nats.js import JetStreamContext

from parley.ingestion.pipeline import Pipeline
from parley.kit import bus
from parley.kit.errors import FailedPrecondition, NotFound
from parley.kit.ids import as_uuid
from parley.v1 import events_pb2


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    seq: int
    document_id: uuid.UUID
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
    """The parked message as this tenant's ingest job, or None when it is not one."""
    try:
        job = events_pb2.IngestJob.FromString(parked.data)
    except DecodeError:
        return None
    document_id = as_uuid(job.document_id)
    if job.tenant_id != tenant_id or document_id is None:
        return None
    record = DeadLetterRecord(
        seq=parked.seq,
        document_id=document_id,
        version=job.version,
        subject=parked.subject,
        deliveries=parked.deliveries,
        reason=parked.reason,
        parked_at=parked.parked_at,
    )
    return _Parked(record=record, message=parked)


class DeadLetters:
    def __init__(self, *, js: JetStreamContext, pipeline: Pipeline, stream: str, durables: Sequence[str]) -> None:
        self._js = js
        self._pipeline = pipeline
        self._stream = stream
        self._durables = tuple(durables)

    async def list(self, *, tenant_id: str) -> list[DeadLetterRecord]:
        parked = await bus.parked_messages(self._js, stream=self._stream, durables=self._durables)
        return [read.record for read in (_read(message, tenant_id=tenant_id) for message in parked) if read]

    async def replay(self, *, tenant_id: str, seq: int) -> DeadLetterRecord:
        parked = await bus.get_parked(self._js, seq) if seq > 0 else None
        read = None if parked is None or parked.durable not in self._durables else _read(parked, tenant_id=tenant_id)
        if read is None:
            raise NotFound(f"no parked ingest job {seq}")
        # The document first: a job redelivered to a FAILED version would be a no-op.
        if not await self._pipeline.requeue(
            tenant_id=tenant_id, document_id=read.record.document_id, version=read.record.version
        ):
            raise FailedPrecondition(
                f"parked job {seq} is for version {read.record.version}, which is no longer the document's "
                "current version; upload it again instead"
            )
        await bus.replay_parked(self._js, read.message)
        return read.record
