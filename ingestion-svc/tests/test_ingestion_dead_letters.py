"""The operators' dead letters are every service's: a message any consumer parked (kit.bus) is
listed with who gave up on it and why, to its tenant only, and replayed onto its subject; a
chunk set retrieval gave up on takes its document back to indexing first."""

import uuid

import grpc
import pytest
from nats.aio.client import Client as NatsClient

from parley.kit import bus
from parley.kit.contracts import ANALYZE_JOBS, CHUNKS_UPSERTED, USAGE_RECORDED, parked_subject
from parley.kit.identity import Identity
from parley.kit.testing import signed
from parley.v1 import events_pb2, ingestion_pb2, ingestion_pb2_grpc

Stub = ingestion_pb2_grpc.IngestionServiceStub


def who(tenant_id: str) -> tuple[tuple[str, str], ...]:
    return signed(Identity(tenant_id=tenant_id, user_id="admin", request_id="dead-letters"))


async def park(nats_client: NatsClient, *, stream: str, durable: str, subject: str, data: bytes) -> int:
    """What kit.bus does when a consumer gives a message up: its seq in PARKED."""
    ack = await nats_client.jetstream().publish(
        parked_subject(stream, durable),
        data,
        headers={
            bus.PARKED_SUBJECT_HEADER: subject,
            bus.PARKED_DELIVERIES_HEADER: "5",
            bus.PARKED_REASON_HEADER: "OperationalError: the database went away",
        },
    )
    return int(ack.seq)


async def test_a_usage_event_parked_by_usage_svc_is_listed_to_its_tenant_and_replayed(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str
) -> None:
    event = events_pb2.UsageRecorded(event_id=str(uuid.uuid4()), tenant_id=tenant_id, kind="chat", model="m")
    seq = await park(
        nats_client, stream="USAGE", durable="usage-recorder", subject=USAGE_RECORDED, data=event.SerializeToString()
    )

    listed = await ingestion.ListDeadLetters(ingestion_pb2.ListDeadLettersRequest(), metadata=who(tenant_id))
    [letter] = [letter for letter in listed.dead_letters if letter.seq == seq]
    assert (letter.consumer, letter.subject, letter.deliveries, letter.document_id) == (
        "usage-recorder",
        USAGE_RECORDED,
        5,
        "",
    )
    assert "the database went away" in letter.reason
    stranger = await ingestion.ListDeadLetters(ingestion_pb2.ListDeadLettersRequest(), metadata=who("someone-else"))
    assert all(letter.seq != seq for letter in stranger.dead_letters)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ingestion.ReplayDeadLetter(ingestion_pb2.ReplayDeadLetterRequest(seq=seq), metadata=who("someone-else"))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND

    redelivered = await nats_client.subscribe(USAGE_RECORDED)
    try:
        await ingestion.ReplayDeadLetter(ingestion_pb2.ReplayDeadLetterRequest(seq=seq), metadata=who(tenant_id))
        message = await redelivered.next_msg(timeout=5)
    finally:
        await redelivered.unsubscribe()
    assert events_pb2.UsageRecorded.FromString(message.data).event_id == event.event_id
    listed = await ingestion.ListDeadLetters(ingestion_pb2.ListDeadLettersRequest(), metadata=who(tenant_id))
    assert all(letter.seq != seq for letter in listed.dead_letters)


async def test_a_chunk_set_retrieval_parked_names_its_document_and_version(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str
) -> None:
    document_id = str(uuid.uuid4())
    upserted = events_pb2.ChunksUpserted(tenant_id=tenant_id, document_id=document_id, version=3)
    seq = await park(
        nats_client,
        stream="DOCS",
        durable="retrieval-upserted",
        subject=CHUNKS_UPSERTED,
        data=upserted.SerializeToString(),
    )

    listed = await ingestion.ListDeadLetters(ingestion_pb2.ListDeadLettersRequest(), metadata=who(tenant_id))
    [letter] = [letter for letter in listed.dead_letters if letter.seq == seq]
    assert (letter.consumer, letter.document_id, letter.version) == ("retrieval-upserted", document_id, 3)
    # Its document is not (or no longer) at that version: replaying it would do nothing.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ingestion.ReplayDeadLetter(ingestion_pb2.ReplayDeadLetterRequest(seq=seq), metadata=who(tenant_id))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_parked_analysis_job_is_listed_with_its_document_and_replayed(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str
) -> None:
    document_id = str(uuid.uuid4())
    job = events_pb2.AnalyzeJob(tenant_id=tenant_id, document_id=document_id, version=2)
    seq = await park(
        nats_client, stream="JOBS", durable="ingestion-analyze", subject=ANALYZE_JOBS, data=job.SerializeToString()
    )

    listed = await ingestion.ListDeadLetters(ingestion_pb2.ListDeadLettersRequest(), metadata=who(tenant_id))
    [letter] = [letter for letter in listed.dead_letters if letter.seq == seq]
    assert (letter.consumer, letter.subject, letter.document_id, letter.version) == (
        "ingestion-analyze",
        ANALYZE_JOBS,
        document_id,
        2,
    )

    # Replayed as it was: the analysis job runs again (its document stays ready and searchable meanwhile).
    redelivered = await nats_client.subscribe(ANALYZE_JOBS)
    try:
        await ingestion.ReplayDeadLetter(ingestion_pb2.ReplayDeadLetterRequest(seq=seq), metadata=who(tenant_id))
        message = await redelivered.next_msg(timeout=5)
    finally:
        await redelivered.unsubscribe()
    assert events_pb2.AnalyzeJob.FromString(message.data) == job
    listed = await ingestion.ListDeadLetters(ingestion_pb2.ListDeadLettersRequest(), metadata=who(tenant_id))
    assert all(letter.seq != seq for letter in listed.dead_letters)
