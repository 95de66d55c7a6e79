"""The subjects ingestion publishes and consumes (all named in parley.kit.contracts), and its
two durable consumers.

publishes  jobs.ingest.normal       IngestJob          outbox, in the upload's transaction
           docs.chunks.upserted     ChunksUpserted     outbox, in the transaction that stores the chunks
           docs.chunks.deleted      ChunksDeleted      outbox, in the deletion's transaction
           progress.document.<id>   DocumentProgress   plain publish after each commit (best effort)
consumes   jobs.ingest.>            IngestJob          durable ingestion-ingest (stream JOBS)
           docs.chunks.indexed      ChunksIndexed      durable ingestion-indexed (stream DOCS)

Publishing lives with the domain (documents.py, catalog.py, pipeline.py, progress.py), which
takes its subjects from contracts; this module only turns consumed messages into pipeline calls.
"""

import logging

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from parley.ingestion.pipeline import Pipeline
from parley.kit import bus
from parley.kit.contracts import CHUNKS_INDEXED, INGEST_JOBS
from parley.v1 import events_pb2

log = logging.getLogger(__name__)

INGEST_DURABLE = "ingestion-ingest"
INDEXED_DURABLE = "ingestion-indexed"


def consumers(
    pipeline: Pipeline, *, ingest_durable: str = INGEST_DURABLE, indexed_durable: str = INDEXED_DURABLE
) -> list[bus.Consumer]:
    async def on_ingest_job(message: Msg) -> None:
        try:
            job = events_pb2.IngestJob.FromString(message.data)
        except DecodeError:
            # Redelivering a payload we cannot read would only park it later; drop it now, loudly.
            log.error("dropped an unreadable IngestJob", extra={"fields": {"subject": message.subject}})
            return
        await pipeline.chunk_version(tenant_id=job.tenant_id, document_id=job.document_id, version=job.version)

    async def on_chunks_indexed(message: Msg) -> None:
        try:
            event = events_pb2.ChunksIndexed.FromString(message.data)
        except DecodeError:
            log.error("dropped an unreadable ChunksIndexed", extra={"fields": {"subject": message.subject}})
            return
        await pipeline.mark_indexed(tenant_id=event.tenant_id, document_id=event.document_id, version=event.version)

    return [
        # Chunking a large document takes a while; give it time before JetStream redelivers.
        bus.Consumer(
            stream="JOBS",
            durable=ingest_durable,
            subject=INGEST_JOBS,
            handler=on_ingest_job,
            ack_wait_seconds=300.0,
            batch=1,
        ),
        bus.Consumer(stream="DOCS", durable=indexed_durable, subject=CHUNKS_INDEXED, handler=on_chunks_indexed),
    ]
