"""The usage.recorded consumer, through real JetStream into real PostgreSQL."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from parley.kit.db import Sessions
from parley.usage.budget import Budgets, Hold
from parley.usage.models import reservations, usage_events
from parley.v1.common_pb2 import TokenUsage
from parley.v1.events_pb2 import UsageRecorded


def usage_event(tenant_id: str, **fields: object) -> UsageRecorded:
    occurred_at = Timestamp()
    occurred_at.FromDatetime(datetime.now(UTC))
    values: dict[str, object] = {
        "event_id": str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "user_id": "user-1",
        "kind": "chat",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "usage": TokenUsage(input_tokens=1_000, output_tokens=500, cache_read_tokens=2_000, cache_write_tokens=0),
        "latency_ms": 900,
        "success": True,
        "occurred_at": occurred_at,
    }
    values.update(fields)
    return UsageRecorded(**values)


async def tenant_events(sessions: Sessions, tenant_id: str) -> list[tuple[str, int]]:
    async with sessions() as session:
        rows = await session.execute(
            select(usage_events.c.event_id, usage_events.c.cost_micros).where(usage_events.c.tenant_id == tenant_id)
        )
        return [(row.event_id, row.cost_micros) for row in rows]


async def test_a_redelivered_event_is_recorded_and_charged_once(
    recorded: Callable[..., Awaitable[None]], sessions: Sessions, tenant_id: str
) -> None:
    event = usage_event(tenant_id)

    await recorded(
        (event, event.event_id),
        (event, event.event_id),  # the same message again: JetStream drops it
        (event, f"retry-{uuid.uuid4()}"),  # a new message with the same event: the database ignores it
    )

    # 1000*3 + 500*15 + 2000*0.3 micro-USD at the sonnet price
    assert await tenant_events(sessions, tenant_id) == [(event.event_id, 3_000 + 7_500 + 600)]


async def test_unknown_models_are_charged_at_the_default_price_and_local_ones_at_nothing(
    recorded: Callable[..., Awaitable[None]], sessions: Sessions, tenant_id: str
) -> None:
    unknown = usage_event(tenant_id, provider="openai", model="gpt-9", usage=TokenUsage(input_tokens=1_000))
    offline = usage_event(tenant_id, provider="local", model="local-embed", usage=TokenUsage(input_tokens=1_000))

    await recorded((unknown, unknown.event_id), (offline, offline.event_id))

    assert sorted(await tenant_events(sessions, tenant_id)) == sorted(
        [(unknown.event_id, 15_000), (offline.event_id, 0)]
    )


async def test_the_recorded_event_settles_its_reservation(
    recorded: Callable[..., Awaitable[None]], sessions: Sessions, budgets: Budgets, tenant_id: str
) -> None:
    hold = await budgets.reserve(
        tenant_id=tenant_id, hold=Hold(model="claude-sonnet-4-5", input_tokens=1_000, max_output_tokens=1_000)
    )
    # 1,000 input tokens at the 1-hour write rate (6 micro-USD) + 1,000 output at 15
    assert (await budgets.quota(tenant_id=tenant_id)).reserved_micros == 21_000

    event = usage_event(tenant_id, reservation_id=hold.id)
    await recorded((event, event.event_id), (event, f"retry-{uuid.uuid4()}"))

    quota = await budgets.quota(tenant_id=tenant_id)
    assert (quota.spent_micros, quota.reserved_micros) == (11_100, 0)
    async with sessions() as session:
        status = await session.scalar(select(reservations.c.status).where(reservations.c.id == hold.id))
    assert status == "settled"


async def test_an_event_cannot_settle_another_tenants_reservation(
    recorded: Callable[..., Awaitable[None]], sessions: Sessions, budgets: Budgets, tenant_id: str
) -> None:
    other_tenant = str(uuid.uuid4())
    hold = await budgets.reserve(
        tenant_id=other_tenant, hold=Hold(model="gpt-4o", input_tokens=100, max_output_tokens=100)
    )

    event = usage_event(tenant_id, reservation_id=hold.id)
    await recorded((event, event.event_id))

    assert len(await tenant_events(sessions, tenant_id)) == 1
    async with sessions() as session:
        held = await session.scalar(
            select(func.count()).where(reservations.c.id == hold.id, reservations.c.status == "held")
        )
    assert held == 1


async def test_an_event_billed_at_its_hold_charges_the_whole_hold_once(
    recorded: Callable[..., Awaitable[None]], sessions: Sessions, budgets: Budgets, tenant_id: str
) -> None:
    # The replica running the call died: its true usage is unknown, the hold is the most it cost.
    hold = await budgets.reserve(
        tenant_id=tenant_id, hold=Hold(model="claude-sonnet-4-5", input_tokens=1_000, max_output_tokens=1_000)
    )
    event = usage_event(tenant_id, reservation_id=hold.id, usage=TokenUsage(), success=False, billed_at_hold=True)
    await recorded((event, event.event_id), (event, f"retry-{uuid.uuid4()}"))

    assert await tenant_events(sessions, tenant_id) == [(event.event_id, 21_000)]
    quota = await budgets.quota(tenant_id=tenant_id)
    assert (quota.spent_micros, quota.reserved_micros) == (21_000, 0)
    async with sessions() as session:
        flagged = await session.scalar(
            select(usage_events.c.billed_at_hold).where(usage_events.c.event_id == event.event_id)
        )
    assert flagged is True
