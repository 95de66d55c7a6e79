"""The kit's parts against real servers: settings, gRPC edge, JetStream parking, the outbox."""

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DeliverPolicy
from pydantic import SecretStr, ValidationError
from sqlalchemy import MetaData, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.kit import bus, db, outbox
from parley.kit.devstack import Secrets
from parley.kit.errors import InvalidInput, NotFound, Unavailable
from parley.kit.identity import Identity, Signer, caller, identity_from_metadata
from parley.kit.paging import Cursor, decode_token, encode_token, page_size
from parley.kit.rpc import GrpcServer, open_channel
from parley.kit.settings import ServiceSettings
from parley.kit.testing import TEST_INTERNAL_SECRET, TEST_SIGNER, signed
from parley.v1 import events_pb2, retrieval_pb2, retrieval_pb2_grpc


class SecretSettings(ServiceSettings):
    signing_key: SecretStr


def test_a_placeholder_secret_is_refused_outside_dev() -> None:
    urls = {"database_url": "postgresql://db/parley", "nats_url": "nats://nats:4222"}
    with pytest.raises(ValidationError, match="PARLEY_SIGNING_KEY is missing or a placeholder"):
        SecretSettings(**urls, env="prod", signing_key="changeme")
    assert SecretSettings(**urls, env="dev", signing_key="changeme").env == "dev"
    assert SecretSettings(**urls, env="prod", signing_key="a-real-secret-9f3k").signing_key.get_secret_value()


def test_a_missing_required_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="database_url"):
        ServiceSettings(nats_url="nats://nats:4222")


def test_secrets_are_made_once_and_kept_private(tmp_path: Path) -> None:
    first = Secrets.load_or_create(tmp_path)
    again = Secrets.load_or_create(tmp_path)
    assert first.first_start and not again.first_start
    assert again.admin_api_key == first.admin_api_key and first.admin_api_key.startswith("pk_")
    assert (tmp_path / "admin-key").read_text().strip() == first.admin_api_key
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0


class Lookup(retrieval_pb2_grpc.RetrievalServiceServicer):
    async def GetChunks(self, request: retrieval_pb2.GetChunksRequest, context: grpc.aio.ServicerContext):
        tenant = caller(context).tenant_id
        if tenant != "t1":
            raise NotFound("no such chunks")
        return retrieval_pb2.GetChunksResponse(chunks=[retrieval_pb2.ChunkHit(chunk_id=tenant)])

    async def Search(self, request: retrieval_pb2.SearchRequest, context: grpc.aio.ServicerContext):
        raise RuntimeError("database password is hunter2")

    neighbour_calls = 0

    async def GetNeighbors(self, request: retrieval_pb2.GetNeighborsRequest, context: grpc.aio.ServicerContext):
        # Work done, then a dependency fails: a retry would do the work again.
        Lookup.neighbour_calls += 1
        raise Unavailable("the embedder is down")


async def test_the_grpc_edge_admits_maps_and_hides() -> None:
    server = GrpcServer(port=0, host="127.0.0.1", signer=TEST_SIGNER)
    server.add(retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server, Lookup(), "parley.v1.RetrievalService")
    await server.start()
    try:
        async with open_channel(f"127.0.0.1:{server.port}") as channel:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
            ok = await stub.GetChunks(
                retrieval_pb2.GetChunksRequest(), metadata=signed(Identity("t1", "u1", "r1")), timeout=5
            )
            assert ok.chunks[0].chunk_id == "t1"
            with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                await stub.GetChunks(retrieval_pb2.GetChunksRequest(), timeout=5)
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as other:
                await stub.GetChunks(retrieval_pb2.GetChunksRequest(), metadata=signed(Identity("t2")), timeout=5)
            assert other.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as crashed:
                await stub.Search(retrieval_pb2.SearchRequest(), metadata=signed(Identity("t1")), timeout=5)
            assert crashed.value.code() == grpc.StatusCode.INTERNAL
            assert "hunter2" not in (crashed.value.details() or "")
            # The channel retries UNAVAILABLE for calls that never reached a server, not for one a
            # server answered with.
            with pytest.raises(grpc.aio.AioRpcError) as unavailable:
                await stub.GetNeighbors(retrieval_pb2.GetNeighborsRequest(), metadata=signed(Identity("t1")), timeout=5)
            assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE
            assert Lookup.neighbour_calls == 1
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(1)


async def test_an_identity_that_is_not_signed_by_the_installation_is_unauthenticated() -> None:
    """Reaching a service's port is not enough to name a tenant: a forged tenant, an unsigned
    identity, one signed with another secret, or an expired signature are all refused before the
    servicer runs."""
    server = GrpcServer(port=0, host="127.0.0.1", signer=TEST_SIGNER)
    server.add(retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server, Lookup(), "parley.v1.RetrievalService")
    await server.start()
    genuine = dict(signed(Identity("t2", "mallory", "r1")))
    forged_tenant = tuple({**genuine, "x-tenant-id": "t1"}.items())
    forged_role = tuple({**genuine, "x-role": "owner"}.items())
    unsigned = Identity("t1", "u1", "r1").metadata()
    other_secret = Signer("another-installation").metadata(Identity("t1", "u1", "r1"))
    expired = Signer(TEST_INTERNAL_SECRET, clock=lambda: time.time() - 3600).metadata(Identity("t1", "u1", "r1"))
    try:
        async with open_channel(f"127.0.0.1:{server.port}") as channel:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
            for metadata in (forged_tenant, forged_role, unsigned, other_secret, expired):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.GetChunks(retrieval_pb2.GetChunksRequest(), metadata=metadata, timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
            ok = await stub.GetChunks(retrieval_pb2.GetChunksRequest(), metadata=signed(Identity("t1")), timeout=5)
            assert ok.chunks[0].chunk_id == "t1"
    finally:
        await server.stop(1)


def test_a_signature_covers_tenant_user_role_request_key_and_expiry() -> None:
    signer = Signer("s3cret", clock=lambda: 1_000.0, ttl_seconds=60)
    pairs = dict(signer.metadata(Identity("t1", "u1", "r1", role="member", api_key_id="k1")))
    assert signer.refusal(pairs) is None
    changed = (
        ("x-tenant-id", "t2"),
        ("x-user-id", "u2"),
        ("x-role", "admin"),
        ("x-request-id", "r2"),
        ("x-api-key-id", "k2"),
    )
    for key, value in changed:
        assert signer.refusal({**pairs, key: value}) is not None, key
    # A call made with a key cannot be passed off as one made without (or the other way round).
    assert signer.refusal({name: value for name, value in pairs.items() if name != "x-api-key-id"}) is not None
    keyless = dict(signer.metadata(Identity("t1", "u1", "r1", role="member")))
    assert "x-api-key-id" not in keyless
    assert signer.refusal({**keyless, "x-api-key-id": "k1"}) is not None
    # What a service reads back (kit.identity.caller) names the key.
    read = identity_from_metadata(tuple(pairs.items()))
    assert read is not None and read.api_key_id == "k1" and read.user_id == "u1"
    later = Signer("s3cret", clock=lambda: 1_061.0)
    assert "expired" in (later.refusal(pairs) or "")


async def test_a_message_that_keeps_failing_is_parked(nats_client: NatsClient) -> None:
    js = nats_client.jetstream()
    durable = f"kit-test-{uuid.uuid4().hex[:8]}"
    subject = f"jobs.test.{durable}"
    attempts: list[int] = []

    async def always_fails(message: Msg) -> None:
        attempts.append(message.metadata.num_delivered)
        raise ValueError("poison")

    parked = await nats_client.subscribe(f"parked.JOBS.{durable}")
    await js.publish(subject, b"poison", headers={"Nats-Msg-Id": durable})
    stop = asyncio.Event()
    consumer = bus.Consumer(stream="JOBS", durable=durable, subject=subject, handler=always_fails, max_deliver=2)
    task = asyncio.create_task(bus.run_consumer(js, consumer, stop))
    try:
        # The nak delay is 2 s: parking comes when the second delivery fails too.
        message = await parked.next_msg(timeout=20)
    finally:
        stop.set()
        await task
        await parked.unsubscribe()
    assert message.data == b"poison"
    assert message.headers == {
        "Parley-Subject": subject,
        "Parley-Deliveries": "2",
        "Parley-Reason": "ValueError: poison",
    }
    assert attempts == [1, 2]

    # An operator lists it, with why, and replays it onto its subject, where it is delivered afresh.
    [listed] = await bus.parked_messages(js, stream="JOBS", durables=[durable])
    assert (listed.subject, listed.deliveries, listed.reason, listed.data) == (
        subject,
        2,
        "ValueError: poison",
        b"poison",
    )
    replayed: list[bytes] = []

    async def succeeds(message: Msg) -> None:
        replayed.append(message.data)

    await bus.replay_parked(js, listed)
    assert await bus.parked_messages(js, stream="JOBS", durables=[durable]) == []
    stop = asyncio.Event()
    fixed = bus.Consumer(stream="JOBS", durable=durable, subject=subject, handler=succeeds, max_deliver=2)
    task = asyncio.create_task(bus.run_consumer(js, fixed, stop))
    try:
        for _ in range(100):
            if replayed:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task
    assert replayed == [b"poison"]


async def test_a_consumer_with_concurrency_handles_messages_of_a_batch_at_once(nats_client: NatsClient) -> None:
    js = nats_client.jetstream()
    durable = f"kit-test-{uuid.uuid4().hex[:8]}"
    subject = f"jobs.test.{durable}"
    both_started = asyncio.Barrier(2)
    handled: list[bytes] = []

    async def needs_company(message: Msg) -> None:
        # Passes only when the other message is being handled at the same time.
        await asyncio.wait_for(both_started.wait(), timeout=5)
        handled.append(message.data)

    for number in (1, 2):
        await js.publish(subject, f"m{number}".encode(), headers={"Nats-Msg-Id": f"{durable}-{number}"})
    stop = asyncio.Event()
    consumer = bus.Consumer(stream="JOBS", durable=durable, subject=subject, handler=needs_company, concurrency=2)
    task = asyncio.create_task(bus.run_consumer(js, consumer, stop))
    try:
        for _ in range(100):
            if len(handled) == 2:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task
    assert sorted(handled) == [b"m1", b"m2"]


async def test_the_outbox_relays_each_row_once(engine: AsyncEngine, nats_client: NatsClient) -> None:
    schema = f"kit_outbox_{uuid.uuid4().hex[:8]}"
    table = outbox.outbox_table(MetaData(schema=schema))
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(table.metadata.create_all)
    sessions = db.session_factory(engine)
    event_id = str(uuid.uuid4())
    subject = f"usage.kit-test.{event_id}"
    event = events_pb2.UsageRecorded(event_id=event_id, tenant_id="t", kind="test")
    relay = outbox.OutboxRelay(sessions=sessions, table=table, js=nats_client.jetstream())
    for _ in range(2):  # the second time as if the relay crashed after publishing, before deleting
        async with sessions.begin() as session:
            await outbox.enqueue(session=session, table=table, subject=subject, msg_id=event_id, message=event)
        assert await relay.publish_pending() == 1
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(table))).scalar() == 0

    subscription = await nats_client.jetstream().subscribe(
        subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    received = [await subscription.next_msg(timeout=5)]
    with pytest.raises(NatsTimeoutError):
        received.append(await subscription.next_msg(timeout=1))
    await subscription.unsubscribe()
    assert events_pb2.UsageRecorded.FromString(received[0].data).event_id == event_id


async def test_a_row_nats_keeps_refusing_is_parked_with_its_reason_and_holds_nothing_back(
    engine: AsyncEngine, nats_client: NatsClient
) -> None:
    schema = f"kit_outbox_{uuid.uuid4().hex[:8]}"
    table = outbox.outbox_table(MetaData(schema=schema))
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(table.metadata.create_all)
    sessions = db.session_factory(engine)
    js = nats_client.jetstream()
    await bus.ensure_streams(js)
    refused_id, good_id = str(uuid.uuid4()), str(uuid.uuid4())
    nowhere = f"nowhere.kit-test.{refused_id}"  # no stream takes this subject: no stream answers
    async with sessions.begin() as session:
        for subject, event_id in ((nowhere, refused_id), (f"usage.kit-test.{good_id}", good_id)):
            event = events_pb2.UsageRecorded(event_id=event_id, tenant_id="t", kind="test")
            await outbox.enqueue(session=session, table=table, subject=subject, msg_id=event_id, message=event)
    relay = outbox.OutboxRelay(sessions=sessions, table=table, js=js, max_attempts=2, park_after_seconds=0)
    parked_before = outbox.outbox_parked.labels(schema, nowhere)._value.get()

    # The refused row does not hold back the one after it; on its second refusal it is parked.
    assert [await relay.publish_pending() for _ in range(3)] == [1, 0, 0]

    async with sessions() as session:
        [row] = (await session.execute(select(table.c.attempts, table.c.last_error, table.c.parked_at))).all()
    assert row.attempts == 2 and row.parked_at is not None
    assert "no response from stream" in row.last_error  # why, as NATS said it
    assert outbox.outbox_parked.labels(schema, nowhere)._value.get() == parked_before + 1
    # Announced on PARKED like a consumer's dead letter, so the operators' dead-letter API lists it.
    [notice] = [parked for parked in await bus.all_parked(js) if parked.subject == nowhere]
    assert notice.durable == schema and notice.deliveries == 2
    assert "could not publish" in notice.reason
    assert events_pb2.UsageRecorded.FromString(notice.data).event_id == refused_id


def test_page_tokens_round_trip_and_refuse_forgeries() -> None:
    cursor = Cursor(at=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), id=uuid.uuid4())
    assert decode_token(encode_token(cursor)) == cursor
    assert decode_token("") is None
    for forged in ("!!!", "bm90IGpzb24", encode_token(cursor)[:-3]):
        with pytest.raises(InvalidInput):
            decode_token(forged)
    assert (page_size(0), page_size(5), page_size(1000)) == (20, 5, 100)
    with pytest.raises(InvalidInput):
        page_size(-1)
