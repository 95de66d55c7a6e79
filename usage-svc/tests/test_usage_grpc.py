"""UsageService over a real gRPC channel, against real PostgreSQL."""

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from parley.kit.identity import Identity
from parley.kit.testing import signed
from parley.usage.budget import Budgets, Hold
from parley.usage.recording import Recorder
from parley.v1 import usage_pb2, usage_pb2_grpc
from parley.v1.common_pb2 import TokenUsage
from parley.v1.events_pb2 import UsageRecorded

Stub = usage_pb2_grpc.UsageServiceStub
SONNET_1K_IN_1K_OUT = 6_000 + 15_000  # micro-USD held: 1,000 input tokens at the 1-hour cache-write rate + 1,000 output


def as_tenant(tenant_id: str) -> tuple[tuple[str, str], ...]:
    return signed(Identity(tenant_id=tenant_id, user_id="user-1", request_id=str(uuid.uuid4())))


def timestamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


def sonnet_hold(**fields: object) -> usage_pb2.ReserveRequest:
    return usage_pb2.ReserveRequest(model="claude-sonnet-4-5", input_tokens=1_000, max_output_tokens=1_000, **fields)


async def record(recorder: Recorder, tenant_id: str, *, at: datetime, **fields: object) -> None:
    values: dict[str, object] = {
        "event_id": str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "user_id": "alice",
        "kind": "chat",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "usage": TokenUsage(input_tokens=1_000_000),  # 150,000 micro-USD at the gpt-4o-mini price
        "latency_ms": 100,
        "success": True,
        "occurred_at": timestamp(at),
    }
    values.update(fields)
    await recorder.record(UsageRecorded(**values))


async def test_reserve_beyond_the_budget_is_resource_exhausted(usage_stub: Stub, tenant_id: str) -> None:
    await usage_stub.SetBudget(
        usage_pb2.SetBudgetRequest(monthly_limit_micros=2 * SONNET_1K_IN_1K_OUT), metadata=as_tenant(tenant_id)
    )
    for _ in range(2):
        await usage_stub.Reserve(sonnet_hold(), metadata=as_tenant(tenant_id))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await usage_stub.Reserve(sonnet_hold(), metadata=as_tenant(tenant_id))

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    quota = await usage_stub.CheckQuota(usage_pb2.CheckQuotaRequest(), metadata=as_tenant(tenant_id))
    assert (quota.allowed, quota.limit_micros, quota.reserved_micros) == (
        False,
        2 * SONNET_1K_IN_1K_OUT,
        2 * SONNET_1K_IN_1K_OUT,
    )


async def test_settling_a_hold_makes_room_again(usage_stub: Stub, tenant_id: str) -> None:
    await usage_stub.SetBudget(
        usage_pb2.SetBudgetRequest(monthly_limit_micros=SONNET_1K_IN_1K_OUT), metadata=as_tenant(tenant_id)
    )
    hold = await usage_stub.Reserve(sonnet_hold(), metadata=as_tenant(tenant_id))
    assert hold.reserved_micros == SONNET_1K_IN_1K_OUT
    assert hold.expires_at.ToDatetime(tzinfo=UTC) > datetime.now(UTC) + timedelta(minutes=14)

    await usage_stub.Settle(usage_pb2.SettleRequest(reservation_id=hold.reservation_id), metadata=as_tenant(tenant_id))
    await usage_stub.Settle(usage_pb2.SettleRequest(reservation_id=hold.reservation_id), metadata=as_tenant(tenant_id))

    again = await usage_stub.Reserve(sonnet_hold(), metadata=as_tenant(tenant_id))
    assert again.reservation_id != hold.reservation_id


async def test_concurrent_reserves_cannot_both_take_the_last_of_a_budget(usage_stub: Stub, tenant_id: str) -> None:
    await usage_stub.SetBudget(
        usage_pb2.SetBudgetRequest(monthly_limit_micros=SONNET_1K_IN_1K_OUT), metadata=as_tenant(tenant_id)
    )

    outcomes = await asyncio.gather(
        *(usage_stub.Reserve(sonnet_hold(), metadata=as_tenant(tenant_id)) for _ in range(5)), return_exceptions=True
    )

    granted = [outcome for outcome in outcomes if isinstance(outcome, usage_pb2.ReserveResponse)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, grpc.aio.AioRpcError)]
    assert len(granted) == 1
    assert [error.code() for error in refused] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 4


async def test_the_same_idempotency_key_returns_the_same_reservation(usage_stub: Stub, tenant_id: str) -> None:
    first = await usage_stub.Reserve(sonnet_hold(idempotency_key="turn-1"), metadata=as_tenant(tenant_id))
    retry = await usage_stub.Reserve(sonnet_hold(idempotency_key="turn-1"), metadata=as_tenant(tenant_id))
    other = await usage_stub.Reserve(sonnet_hold(idempotency_key="turn-2"), metadata=as_tenant(tenant_id))
    elsewhere = await usage_stub.Reserve(sonnet_hold(idempotency_key="turn-1"), metadata=as_tenant(str(uuid.uuid4())))

    assert retry.reservation_id == first.reservation_id
    assert len({first.reservation_id, other.reservation_id, elsewhere.reservation_id}) == 3
    quota = await usage_stub.CheckQuota(usage_pb2.CheckQuotaRequest(), metadata=as_tenant(tenant_id))
    assert quota.reserved_micros == 2 * SONNET_1K_IN_1K_OUT


async def test_expired_holds_no_longer_count(budgets: Budgets, tenant_id: str) -> None:
    await budgets.set_limit(tenant_id=tenant_id, monthly_limit_micros=SONNET_1K_IN_1K_OUT)
    now = datetime.now(UTC)
    hold = Hold(model="claude-sonnet-4-5", input_tokens=1_000, max_output_tokens=1_000)
    await budgets.reserve(tenant_id=tenant_id, hold=hold, now=now - timedelta(minutes=16))

    await budgets.reserve(tenant_id=tenant_id, hold=hold, now=now)

    quota = await budgets.quota(tenant_id=tenant_id, now=now)
    assert quota.reserved_micros == SONNET_1K_IN_1K_OUT


async def test_another_tenant_cannot_settle_your_reservation(usage_stub: Stub, tenant_id: str) -> None:
    hold = await usage_stub.Reserve(sonnet_hold(), metadata=as_tenant(tenant_id))

    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await usage_stub.Settle(
            usage_pb2.SettleRequest(reservation_id=hold.reservation_id), metadata=as_tenant(str(uuid.uuid4()))
        )
    with pytest.raises(grpc.aio.AioRpcError) as garbage:
        await usage_stub.Settle(usage_pb2.SettleRequest(reservation_id="not-a-uuid"), metadata=as_tenant(tenant_id))

    assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
    assert garbage.value.code() == grpc.StatusCode.NOT_FOUND
    quota = await usage_stub.CheckQuota(usage_pb2.CheckQuotaRequest(), metadata=as_tenant(tenant_id))
    assert quota.reserved_micros == SONNET_1K_IN_1K_OUT


async def test_a_zero_budget_refuses_any_cost_and_no_limit_is_explicit(usage_stub: Stub, tenant_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as negative:
        await usage_stub.SetBudget(usage_pb2.SetBudgetRequest(monthly_limit_micros=-1), metadata=as_tenant(tenant_id))
    assert negative.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    zero = await usage_stub.SetBudget(usage_pb2.SetBudgetRequest(monthly_limit_micros=0), metadata=as_tenant(tenant_id))
    assert zero.HasField("monthly_limit_micros") and zero.monthly_limit_micros == 0
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await usage_stub.Reserve(sonnet_hold(), metadata=as_tenant(tenant_id))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A hold of nothing does not take the total past a limit of nothing: free calls still pass.
    free = await usage_stub.Reserve(
        usage_pb2.ReserveRequest(model="local", provider="local", input_tokens=5_000, max_output_tokens=1_000),
        metadata=as_tenant(tenant_id),
    )
    assert free.reserved_micros == 0
    quota = await usage_stub.CheckQuota(usage_pb2.CheckQuotaRequest(), metadata=as_tenant(tenant_id))
    assert (quota.allowed, quota.HasField("limit_micros"), quota.limit_micros) == (False, True, 0)

    removed = await usage_stub.SetBudget(usage_pb2.SetBudgetRequest(), metadata=as_tenant(tenant_id))
    assert not removed.HasField("monthly_limit_micros")
    await usage_stub.Reserve(sonnet_hold(), metadata=as_tenant(tenant_id))
    quota = await usage_stub.CheckQuota(usage_pb2.CheckQuotaRequest(), metadata=as_tenant(tenant_id))
    assert (quota.allowed, quota.HasField("limit_micros")) == (True, False)


@pytest.mark.parametrize(
    ("provider", "model", "held"),
    [
        # 2,000 input tokens at 2.5 micro-USD + 500 output tokens at 10 micro-USD (gpt-4o's prices;
        # OpenAI's cache costs nothing to write, so plain input is input's dearest rate)
        ("openai", "gpt-4o", 5_000 + 5_000),
        # chat-svc's default Claude model has a row of its own: input at its 1-hour cache-write rate
        # (6 micro-USD, 2x plain input), output at 15
        ("anthropic", "claude-sonnet-4-6", 12_000 + 7_500),
        # a model the table does not list is held at the dearest row, "default": 30 and 75 micro-USD
        ("openai", "gpt-9", 60_000 + 37_500),
        ("", "gpt-9", 60_000 + 37_500),
        # ...except the offline provider's, which are free whatever they are called
        ("local", "local-large", 0),
    ],
)
async def test_a_hold_is_input_tokens_at_their_dearest_price_plus_max_output_at_the_output_price(
    usage_stub: Stub, tenant_id: str, provider: str, model: str, held: int
) -> None:
    hold = await usage_stub.Reserve(
        usage_pb2.ReserveRequest(provider=provider, model=model, input_tokens=2_000, max_output_tokens=500),
        metadata=as_tenant(tenant_id),
    )

    assert hold.reserved_micros == held
    quota = await usage_stub.CheckQuota(usage_pb2.CheckQuotaRequest(), metadata=as_tenant(tenant_id))
    assert quota.reserved_micros == held


async def test_a_hold_with_fallbacks_is_priced_at_its_dearest_route(usage_stub: Stub, tenant_id: str) -> None:
    """A call that may fall back to a dearer model is held at that model's price: billed as the
    model that answered, it could otherwise pass its hold."""
    asked = {"provider": "anthropic", "model": "claude-haiku-4-5", "input_tokens": 2_000, "max_output_tokens": 500}
    alone = await usage_stub.Reserve(usage_pb2.ReserveRequest(**asked), metadata=as_tenant(tenant_id))
    routes = [
        usage_pb2.ModelRoute(provider="openai", model="gpt-4o-mini"),  # cheaper: changes nothing
        usage_pb2.ModelRoute(provider="anthropic", model="claude-sonnet-4-5"),  # the dearest listed
    ]
    falling = await usage_stub.Reserve(
        usage_pb2.ReserveRequest(**asked, fallbacks=routes), metadata=as_tenant(tenant_id)
    )
    unlisted = await usage_stub.Reserve(
        usage_pb2.ReserveRequest(**asked, fallbacks=[usage_pb2.ModelRoute(provider="anthropic", model="claude-x")]),
        metadata=as_tenant(tenant_id),
    )

    # Input at each row's 1-hour cache-write rate (2x input), the dearest it may be billed at.
    assert alone.reserved_micros == 2_000 * 2_000_000 // 1_000_000 + 500 * 5  # Haiku: 4,000 + 2,500
    assert falling.reserved_micros == 2_000 * 6_000_000 // 1_000_000 + 500 * 15  # Sonnet: 12,000 + 7,500
    assert unlisted.reserved_micros == 2_000 * 30_000_000 // 1_000_000 + 500 * 75  # the default row
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await usage_stub.Reserve(
            usage_pb2.ReserveRequest(**asked, fallbacks=[usage_pb2.ModelRoute(provider="openai")]),
            metadata=as_tenant(tenant_id),
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_month_to_date_spend_counts_against_the_budget(
    usage_stub: Stub, recorder: Recorder, tenant_id: str
) -> None:
    await record(recorder, tenant_id, at=datetime.now(UTC))  # 150,000 spent
    await usage_stub.SetBudget(
        usage_pb2.SetBudgetRequest(monthly_limit_micros=150_000 + SONNET_1K_IN_1K_OUT), metadata=as_tenant(tenant_id)
    )

    await usage_stub.Reserve(sonnet_hold(), metadata=as_tenant(tenant_id))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await usage_stub.Reserve(sonnet_hold(), metadata=as_tenant(tenant_id))

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    quota = await usage_stub.CheckQuota(usage_pb2.CheckQuotaRequest(), metadata=as_tenant(tenant_id))
    assert (quota.spent_micros, quota.reserved_micros) == (150_000, SONNET_1K_IN_1K_OUT)


async def test_get_usage_groups_and_totals(usage_stub: Stub, recorder: Recorder, tenant_id: str) -> None:
    day_one = datetime(2025, 5, 1, 10, tzinfo=UTC)
    day_two = datetime(2025, 5, 2, 23, 59, tzinfo=UTC)
    await record(recorder, tenant_id, at=day_one)
    await record(recorder, tenant_id, at=day_one, user_id="bob", kind="summary")
    await record(
        recorder,
        tenant_id,
        at=day_two,
        model="claude-sonnet-4-5",
        provider="anthropic",
        usage=TokenUsage(input_tokens=100, output_tokens=200, cache_read_tokens=1_000, cache_write_tokens=400),
    )
    await record(recorder, tenant_id, at=day_two + timedelta(days=40))  # outside the window
    await record(recorder, str(uuid.uuid4()), at=day_one)  # another tenant's
    window = {
        "since": timestamp(datetime(2025, 5, 1, tzinfo=UTC)),
        "until": timestamp(datetime(2025, 6, 1, tzinfo=UTC)),
    }

    async def usage(group_by: int) -> usage_pb2.GetUsageResponse:
        request = usage_pb2.GetUsageRequest(group_by=group_by, **window)
        return await usage_stub.GetUsage(request, metadata=as_tenant(tenant_id))

    sonnet_cost = 300 + 3_000 + 300 + 1_500  # 100*3 + 200*15 + 1000*0.3 + 400*3.75 micro-USD
    ungrouped = await usage(usage_pb2.USAGE_GROUP_BY_UNSPECIFIED)
    assert list(ungrouped.rows) == []
    assert ungrouped.total == usage_pb2.UsageRow(
        group="total",
        events=3,
        input_tokens=2_000_100,
        output_tokens=200,
        cache_read_tokens=1_000,
        cache_write_tokens=400,
        total_tokens=2_001_700,
        cost_micros=300_000 + sonnet_cost,
    )

    by_day = await usage(usage_pb2.USAGE_GROUP_BY_DAY)
    assert [(row.group, row.events, row.cost_micros) for row in by_day.rows] == [
        ("2025-05-01", 2, 300_000),
        ("2025-05-02", 1, sonnet_cost),
    ]
    assert by_day.total == ungrouped.total

    by_model = await usage(usage_pb2.USAGE_GROUP_BY_MODEL)
    assert [(row.group, row.total_tokens) for row in by_model.rows] == [
        ("claude-sonnet-4-5", 1_700),
        ("gpt-4o-mini", 2_000_000),
    ]
    by_user = await usage(usage_pb2.USAGE_GROUP_BY_USER)
    assert [(row.group, row.events) for row in by_user.rows] == [("alice", 2), ("bob", 1)]
    by_kind = await usage(usage_pb2.USAGE_GROUP_BY_KIND)
    assert [(row.group, row.events) for row in by_kind.rows] == [("chat", 2), ("summary", 1)]
    assert by_kind.total == ungrouped.total


async def test_get_usage_by_api_key_reports_each_keys_spend(
    usage_stub: Stub, recorder: Recorder, tenant_id: str
) -> None:
    """The key a call was made with rides its usage event; calls made without one (single
    sign-on, a service's own work) are the "" group."""
    now = datetime.now(UTC)
    await record(recorder, tenant_id, at=now, api_key_id="key-a")
    await record(recorder, tenant_id, at=now, api_key_id="key-a", user_id="bob")
    await record(recorder, tenant_id, at=now, api_key_id="key-b")
    await record(recorder, tenant_id, at=now)
    await record(recorder, str(uuid.uuid4()), at=now, api_key_id="key-a")  # another tenant's
    request = usage_pb2.GetUsageRequest(
        group_by=usage_pb2.USAGE_GROUP_BY_API_KEY,
        since=timestamp(now - timedelta(hours=1)),
        until=timestamp(now + timedelta(hours=1)),
    )

    by_key = await usage_stub.GetUsage(request, metadata=as_tenant(tenant_id))

    assert [(row.group, row.events, row.cost_micros) for row in by_key.rows] == [
        ("", 1, 150_000),
        ("key-a", 2, 300_000),
        ("key-b", 1, 150_000),
    ]
    assert by_key.total.cost_micros == 600_000


async def test_get_usage_of_a_quiet_tenant_is_zero(usage_stub: Stub, tenant_id: str) -> None:
    response = await usage_stub.GetUsage(
        usage_pb2.GetUsageRequest(group_by=usage_pb2.USAGE_GROUP_BY_DAY), metadata=as_tenant(tenant_id)
    )
    assert list(response.rows) == []
    assert (response.total.events, response.total.cost_micros) == (0, 0)


async def test_summary_of_the_last_day(usage_stub: Stub, recorder: Recorder, tenant_id: str) -> None:
    now = datetime.now(UTC)
    for latency in (100, 200, 300, 400):
        await record(
            recorder,
            tenant_id,
            at=now - timedelta(hours=1),
            latency_ms=latency,
            success=latency != 400,
            usage=TokenUsage(input_tokens=250, output_tokens=100, cache_read_tokens=750),
        )
    await record(recorder, tenant_id, at=now - timedelta(days=3), latency_ms=10_000)  # only in the 7d window

    day = await usage_stub.GetSummary(usage_pb2.GetSummaryRequest(window="24h"), metadata=as_tenant(tenant_id))
    week = await usage_stub.GetSummary(usage_pb2.GetSummaryRequest(window="7d"), metadata=as_tenant(tenant_id))

    assert (day.requests, day.success_rate, day.total_tokens, day.cache_hit_rate) == (4, 0.75, 4_400, 0.75)
    assert day.latency_p50_ms == pytest.approx(250.0)
    assert day.latency_p95_ms == pytest.approx(385.0)
    assert week.requests == 5
    with pytest.raises(grpc.aio.AioRpcError) as bad_window:
        await usage_stub.GetSummary(usage_pb2.GetSummaryRequest(window="1y"), metadata=as_tenant(tenant_id))
    assert bad_window.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_summary_of_a_quiet_tenant_is_zero(usage_stub: Stub, tenant_id: str) -> None:
    summary = await usage_stub.GetSummary(usage_pb2.GetSummaryRequest(window="7d"), metadata=as_tenant(tenant_id))
    assert summary == usage_pb2.GetSummaryResponse()


async def test_export_streams_the_tenants_events_as_csv(usage_stub: Stub, recorder: Recorder, tenant_id: str) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    for minute in range(7):
        await record(recorder, tenant_id, at=start + timedelta(minutes=minute), user_id=f"user-{minute}")
    await record(recorder, str(uuid.uuid4()), at=start)

    chunks = [
        chunk.csv
        async for chunk in usage_stub.Export(
            usage_pb2.ExportRequest(since=timestamp(start - timedelta(minutes=1))), metadata=as_tenant(tenant_id)
        )
    ]

    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert [row["user_id"] for row in rows] == [f"user-{minute}" for minute in range(7)]
    assert {row["cost_micros"] for row in rows} == {"150000"}
    assert rows[0]["occurred_at"] == start.isoformat()


async def test_export_of_a_quiet_tenant_is_the_header_alone(usage_stub: Stub, tenant_id: str) -> None:
    chunks = [chunk.csv async for chunk in usage_stub.Export(usage_pb2.ExportRequest(), metadata=as_tenant(tenant_id))]
    assert b"".join(chunks).decode().splitlines() == [
        "event_id,occurred_at,user_id,kind,provider,model,input_tokens,output_tokens,cache_read_tokens,"
        "cache_write_tokens,cache_write_1h_tokens,cost_micros,latency_ms,success,reservation_id,conversation_id,request_id"
    ]


async def test_calls_without_a_tenant_are_refused(usage_stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await usage_stub.CheckQuota(usage_pb2.CheckQuotaRequest())
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


CALL = TokenUsage(input_tokens=100, output_tokens=200, cache_read_tokens=1_000, cache_write_tokens=400)


@pytest.mark.parametrize(
    ("provider", "model", "cost"),
    [
        # 100*3 + 200*15 + 1000*0.3 + 400*3.75 micro-USD per token, Sonnet's row
        ("anthropic", "claude-sonnet-4-5", 300 + 3_000 + 300 + 1_500),
        # a model the table does not list is priced at the dearest row, "default": 15, 75, 1.5, 18.75
        ("openai", "gpt-9", 1_500 + 15_000 + 1_500 + 7_500),
        ("local", "local-large", 0),
    ],
)
async def test_price_usage_is_the_calls_usage_at_its_models_row(
    usage_stub: Stub, tenant_id: str, provider: str, model: str, cost: int
) -> None:
    request = usage_pb2.PriceUsageRequest(provider=provider, model=model, usage=CALL)

    priced = await usage_stub.PriceUsage(request, metadata=as_tenant(tenant_id))

    assert priced.cost_micros == cost


async def test_one_hour_cache_writes_are_billed_at_twice_input_and_counted_once(
    usage_stub: Stub, recorder: Recorder, tenant_id: str
) -> None:
    at = datetime(2025, 7, 1, tzinfo=UTC)
    # 1,000 tokens written to the cache, 600 of them to live an hour.
    usage = TokenUsage(input_tokens=10, cache_write_tokens=1_000, cache_write_1h_tokens=600)
    await record(recorder, tenant_id, at=at, provider="anthropic", model="claude-sonnet-4-6", usage=usage)

    billed = await usage_stub.GetUsage(
        usage_pb2.GetUsageRequest(since=timestamp(at), until=timestamp(at + timedelta(days=1))),
        metadata=as_tenant(tenant_id),
    )

    # 10*3 + 400*3.75 (5 minutes: 1.25x) + 600*6 (an hour: 2x) micro-USD
    assert billed.total.cost_micros == 30 + 1_500 + 3_600
    assert (billed.total.cache_write_tokens, billed.total.cache_write_1h_tokens) == (1_000, 600)
    assert billed.total.total_tokens == 1_010  # the hour's writes are a part of the writes, not more


async def test_more_one_hour_writes_than_writes_is_refused(usage_stub: Stub, tenant_id: str) -> None:
    usage = TokenUsage(cache_write_tokens=100, cache_write_1h_tokens=101)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await usage_stub.PriceUsage(
            usage_pb2.PriceUsageRequest(provider="anthropic", model="claude-sonnet-4-6", usage=usage),
            metadata=as_tenant(tenant_id),
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_price_usage_is_what_the_recorded_event_is_billed(
    usage_stub: Stub, recorder: Recorder, tenant_id: str
) -> None:
    at = datetime(2025, 7, 1, tzinfo=UTC)
    usage = TokenUsage(input_tokens=1_234, output_tokens=567, cache_read_tokens=89, cache_write_tokens=10)
    await record(recorder, tenant_id, at=at, provider="openai", model="gpt-4o", usage=usage)

    priced = await usage_stub.PriceUsage(
        usage_pb2.PriceUsageRequest(provider="openai", model="gpt-4o", usage=usage), metadata=as_tenant(tenant_id)
    )

    billed = await usage_stub.GetUsage(
        usage_pb2.GetUsageRequest(since=timestamp(at), until=timestamp(at + timedelta(days=1))),
        metadata=as_tenant(tenant_id),
    )
    assert priced.cost_micros == billed.total.cost_micros > 0
