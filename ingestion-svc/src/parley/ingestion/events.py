"""The subjects ingestion publishes and consumes (all named in parley.kit.contracts), its durable
consumers, and the ingest worker that takes jobs by priority.

publishes  jobs.ingest.<priority>   IngestJob          outbox, in the upload's transaction
           jobs.analyze             AnalyzeJob         outbox, when a version becomes searchable and after each batch
           docs.chunks.upserted     ChunksUpserted     outbox, in the transaction that stores the chunks
           docs.chunks.deleted      ChunksDeleted      outbox, in the deletion's transaction
           progress.document.<id>   DocumentProgress   plain publish after each commit (best effort)
consumes   jobs.ingest.urgent       IngestJob          durable ingestion-ingest-urgent (stream JOBS)
           jobs.ingest.normal       IngestJob          durable ingestion-ingest-normal (stream JOBS)
           jobs.ingest.low          IngestJob          durable ingestion-ingest-low (stream JOBS)
           jobs.analyze             AnalyzeJob         durable ingestion-analyze (stream JOBS), after every ingest queue
           docs.chunks.indexed      ChunksIndexed      durable ingestion-indexed (stream DOCS); with `error`:
                                                       retrieval gave up on the version → FAILED at indexing
parks      parked.JOBS.ingestion-ingest-<priority>     a job that failed JOB_MAX_DELIVER times
           parked.JOBS.ingestion-analyze               likewise (the document stays READY, see artifacts.py)

Priorities are one durable consumer per priority subject, and ONE worker loop that fetches from
them in order (urgent, then normal, then low), one job at a time. Separate consumers running side
by side would let a low job take the worker while an urgent one waits; a single consumer on
jobs.ingest.> would deliver in arrival order. A fetch order makes "urgent first" hold whenever
the worker picks its next job, and keeps one job in flight per process (chunking is CPU-bound).
Analysis jobs are the last queue of the same loop: each writes one batch of artifacts, so an
upload that arrives meanwhile waits for that batch at most.

Publishing lives with the domain (documents.py, catalog.py, pipeline.py, artifacts.py, progress.py), which
takes its subjects from contracts; this module only turns consumed messages into domain calls.
"""

import asyncio
import logging
from collections.abc import Sequence
from typing import TypeVar

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from parley.ingestion.artifacts import Artifacts
from parley.ingestion.models import Status
from parley.ingestion.pipeline import Pipeline
from parley.kit import bus
from parley.kit.contracts import ANALYZE_JOBS, CHUNKS_INDEXED, INGEST_PRIORITIES, ingest_subject
from parley.v1 import events_pb2

log = logging.getLogger(__name__)

JobT = TypeVar("JobT", events_pb2.IngestJob, events_pb2.AnalyzeJob)

INGEST_DURABLE = "ingestion-ingest"
INDEXED_DURABLE = "ingestion-indexed"
ANALYZE_DURABLE = "ingestion-analyze"
JOBS_STREAM = "JOBS"
# Tries before a job is parked: with the nak backoff (2 s, 4 s, …) a job that cannot succeed is
# set aside, and its document marked failed, within seconds rather than blocking its queue.
JOB_MAX_DELIVER = 3
# A job in flight tells JetStream "still working" this often, so a short ack wait does not
# redeliver a long document while it is being chunked, yet a job whose worker was killed is
# redelivered within JOB_ACK_WAIT_SECONDS of its last sign of life.
JOB_ACK_WAIT_SECONDS = 15.0
JOB_HEARTBEAT_SECONDS = 5.0
# How long an idle worker waits on the urgent queue before looking at the others again.
IDLE_WAIT_SECONDS = 0.2


def ingest_durables(prefix: str = INGEST_DURABLE) -> list[str]:
    """The ingest consumers' names, most urgent first."""
    return [f"{prefix}-{priority}" for priority in INGEST_PRIORITIES]


def ingest_consumers(pipeline: Pipeline, *, durable_prefix: str = INGEST_DURABLE) -> list[bus.Consumer]:
    """One durable consumer per priority, most urgent first: run them with `run_by_priority`."""

    async def on_ingest_job(message: Msg) -> None:
        job = _decoded(message, events_pb2.IngestJob)
        if job is not None:
            await pipeline.chunk_version(tenant_id=job.tenant_id, document_id=job.document_id, version=job.version)

    async def on_parked(message: Msg, reason: str) -> None:
        job = _decoded(message, events_pb2.IngestJob)
        if job is not None:
            await pipeline.give_up(
                tenant_id=job.tenant_id, document_id=job.document_id, version=job.version, reason=reason
            )

    return [
        bus.Consumer(
            stream=JOBS_STREAM,
            durable=durable,
            subject=ingest_subject(priority),
            handler=_heartbeating(on_ingest_job),
            max_deliver=JOB_MAX_DELIVER,
            ack_wait_seconds=JOB_ACK_WAIT_SECONDS,
            batch=1,
            on_parked=on_parked,
        )
        for priority, durable in zip(INGEST_PRIORITIES, ingest_durables(durable_prefix), strict=True)
    ]


def analyze_consumer(artifacts: Artifacts, *, durable: str = ANALYZE_DURABLE) -> bus.Consumer:
    """Artifact jobs: run it last in `run_by_priority`, after the ingest consumers."""

    async def on_analyze_job(message: Msg) -> None:
        job = _decoded(message, events_pb2.AnalyzeJob)
        if job is not None:
            await artifacts.write_next(tenant_id=job.tenant_id, document_id=job.document_id, version=job.version)

    async def on_parked(message: Msg, reason: str) -> None:
        job = _decoded(message, events_pb2.AnalyzeJob)
        if job is not None:
            await artifacts.give_up(
                tenant_id=job.tenant_id, document_id=job.document_id, version=job.version, reason=reason
            )

    return bus.Consumer(
        stream=JOBS_STREAM,
        durable=durable,
        subject=ANALYZE_JOBS,
        handler=_heartbeating(on_analyze_job),
        max_deliver=JOB_MAX_DELIVER,
        ack_wait_seconds=JOB_ACK_WAIT_SECONDS,
        batch=1,
        on_parked=on_parked,
    )


def indexed_consumer(pipeline: Pipeline, *, durable: str = INDEXED_DURABLE) -> bus.Consumer:
    async def on_chunks_indexed(message: Msg) -> None:
        try:
            event = events_pb2.ChunksIndexed.FromString(message.data)
        except DecodeError:
            log.error("dropped an unreadable ChunksIndexed", extra={"fields": {"subject": message.subject}})
            return
        if event.error:  # retrieval gave up on the version
            await pipeline.give_up(
                tenant_id=event.tenant_id,
                document_id=event.document_id,
                version=event.version,
                reason=event.error,
                what="indexing it in retrieval",
                stages=frozenset({Status.INDEXING}),
            )
            return
        await pipeline.mark_indexed(tenant_id=event.tenant_id, document_id=event.document_id, version=event.version)

    return bus.Consumer(stream="DOCS", durable=durable, subject=CHUNKS_INDEXED, handler=on_chunks_indexed)


async def run_by_priority(
    js: JetStreamContext,
    consumers: Sequence[bus.Consumer],
    stop: asyncio.Event,
    *,
    retired_durable: str = INGEST_DURABLE,
) -> None:
    """Take one message at a time from the first of `consumers` that has one."""
    await _retire(js, stream=consumers[0].stream, durable=retired_durable)
    queues = [(consumer, await bus.subscribe(js, consumer)) for consumer in consumers]
    try:
        while not stop.is_set():
            try:
                # A fetch from an empty queue only returns when it expires: ask which have work
                # first, so an empty urgent queue costs a round trip, not a wait.
                waiting = [queue for queue in queues if await _has_work(queue[1])]
                for consumer, subscription in waiting or queues[:1]:
                    # Idle, wait on the most urgent queue: an urgent job is taken the moment it
                    # comes, any other within IDLE_WAIT_SECONDS.
                    messages = await _fetch_one(subscription, timeout=0.05 if waiting else IDLE_WAIT_SECONDS)
                    for message in messages:
                        await bus.handle(js, consumer, message)
                    if messages:
                        break  # back to the most urgent queue
            except Exception:
                log.exception("fetching ingest jobs failed")
                await asyncio.sleep(1.0)
                # NATS may have restarted or failed over: find (or re-create) the durables again.
                queues = [
                    (consumer, await bus.resubscribe(js, consumer, subscription)) for consumer, subscription in queues
                ]
    finally:
        for _, subscription in queues:
            await subscription.unsubscribe()


async def _retire(js: JetStreamContext, *, stream: str, durable: str) -> None:
    """Before priorities one durable took `jobs.ingest.>`; JOBS is a work queue, whose consumers
    may not overlap, so it must go before the per-priority ones can be made. Its unfinished jobs
    stay in the stream (a work queue drops a message only when it is acked) and the per-priority
    consumers take them: a `make run` data folder or a cluster upgrades without a manual step."""
    try:
        await js.delete_consumer(stream, durable)
    except NotFoundError:
        return
    log.info("retired the single ingest consumer; its pending jobs go to the per-priority ones")


async def _has_work(subscription: JetStreamContext.PullSubscription) -> bool:
    info = await subscription.consumer_info()
    # Pending: never delivered; ack pending: delivered and not finished (a nak'd job comes back).
    return (info.num_pending or 0) + (info.num_ack_pending or 0) > 0


async def _fetch_one(subscription: JetStreamContext.PullSubscription, *, timeout: float) -> list[Msg]:
    try:
        return await subscription.fetch(1, timeout=timeout)
    except (TimeoutError, NatsTimeoutError):  # nats-py raises either when nothing came
        return []


def _heartbeating(handler: bus.Handler) -> bus.Handler:
    async def run(message: Msg) -> None:
        async def beat() -> None:
            while True:
                await asyncio.sleep(JOB_HEARTBEAT_SECONDS)
                try:
                    await message.in_progress()
                except Exception:
                    log.warning("could not extend a job's ack wait", exc_info=True)

        beating = asyncio.create_task(beat())
        try:
            await handler(message)
        finally:
            beating.cancel()

    return run


def _decoded(message: Msg, kind: type[JobT]) -> JobT | None:
    try:
        return kind.FromString(message.data)
    except DecodeError:
        # Redelivering a payload we cannot read would only park it later; drop it now, loudly.
        log.error(f"dropped an unreadable {kind.__name__}", extra={"fields": {"subject": message.subject}})
        return None
