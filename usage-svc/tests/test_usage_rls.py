"""Row-level security, the second lock behind every query's tenant filter (migration 0004): a
transaction given to one tenant (store.enter_tenant) sees that tenant's budget, holds and usage
events whatever its query forgets; one that names no tenant sees none; nothing is written into
another tenant, and no tenant's transaction may change the price list or erase money."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from parley.kit.db import Sessions
from parley.usage import models, store
from parley.usage.budget import Budgets, Hold
from parley.usage.models import prices, reservations, usage_events
from parley.usage.recording import Recorder
from parley.usage.reports import Reports

from .test_usage_recording import usage_event

TABLES = (models.budgets, reservations, usage_events)


async def _seed(budget_service: Budgets, recorder: Recorder) -> str:
    """A tenant with a budget, a live hold and a recorded usage event."""
    tenant_id = str(uuid.uuid4())
    await budget_service.set_limit(tenant_id=tenant_id, monthly_limit_micros=5_000_000)
    await budget_service.reserve(
        tenant_id=tenant_id, hold=Hold(model="claude-sonnet-4-5", input_tokens=1_000, max_output_tokens=1_000)
    )
    assert await recorder.record(usage_event(tenant_id))
    return tenant_id


async def _counts(session: AsyncSession) -> tuple[int, ...]:
    # No WHERE at all: what the policy lets through.
    return tuple(
        [int((await session.execute(select(func.count()).select_from(table))).scalar_one()) for table in TABLES]
    )


async def test_a_query_without_a_tenant_sees_no_rows(sessions: Sessions, budgets: Budgets, recorder: Recorder) -> None:
    await _seed(budgets, recorder)
    async with sessions.begin() as session:
        assert min(await _counts(session)) >= 1  # the login role, the tables' owner, sees them all
        await session.execute(text("SELECT set_config('role', :role, true)"), {"role": store.TENANT_ROLE})
        assert await _counts(session) == (0, 0, 0)
        # The price list is the installation's, not a tenant's: readable all the same.
        assert (await session.execute(select(func.count()).select_from(prices))).scalar_one() >= 1


async def test_a_tenants_transaction_sees_none_of_another_tenants_rows(
    sessions: Sessions, budgets: Budgets, recorder: Recorder
) -> None:
    ours = await _seed(budgets, recorder)
    theirs = await _seed(budgets, recorder)
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        await store.enter_tenant(session=session, tenant_id=ours)
        assert await _counts(session) == (1, 1, 1)
        for table in TABLES:
            assert set((await session.execute(select(table.c.tenant_id))).scalars()) == {ours}
        # Queries that name the other tenant find nothing of it.
        assert await store.get_budget(session=session, tenant_id=theirs) is None
        assert await store.live_holds(session=session, tenant_id=theirs, now=now) == 0
        assert await store.spent_since(session=session, tenant_id=theirs, since=now - timedelta(days=1)) == 0
    # And the domain's reads, each in its tenant's transaction, still see their own.
    reports = Reports(sessions=sessions, export_rows_per_chunk=10)
    for tenant_id in (ours, theirs):
        _, total = await reports.usage(tenant_id=tenant_id, since=None, until=None, group_by="none")
        assert total.events == 1
        quota = await budgets.quota(tenant_id=tenant_id)
        assert quota.limit_micros == 5_000_000 and quota.reserved_micros > 0 and quota.spent_micros > 0


async def test_nothing_is_written_into_another_tenant(sessions: Sessions, budgets: Budgets, recorder: Recorder) -> None:
    ours = await _seed(budgets, recorder)
    theirs = await _seed(budgets, recorder)
    with pytest.raises(DBAPIError, match="row-level security"):
        async with sessions.begin() as session:
            await store.enter_tenant(session=session, tenant_id=ours)
            await store.put_budget(session=session, tenant_id=str(uuid.uuid4()), monthly_limit_micros=0)
    async with sessions.begin() as session:
        await store.enter_tenant(session=session, tenant_id=ours)
        await store.delete_budget(session=session, tenant_id=theirs)  # sees no row to delete
        await store.expire_holds(session=session, tenant_id=theirs, now=datetime.now(UTC) + timedelta(days=1))
    quota = await budgets.quota(tenant_id=theirs)
    assert quota.limit_micros == 5_000_000 and quota.reserved_micros > 0


@pytest.mark.parametrize(
    "statement",
    [
        update(prices).values(input_price=0),
        delete(usage_events),
        delete(reservations),
    ],
    ids=["change-prices", "erase-usage", "erase-holds"],
)
async def test_a_tenants_transaction_cannot_change_prices_or_erase_money(
    sessions: Sessions, budgets: Budgets, recorder: Recorder, statement: Executable
) -> None:
    ours = await _seed(budgets, recorder)
    with pytest.raises(DBAPIError, match="permission denied"):
        async with sessions.begin() as session:
            await store.enter_tenant(session=session, tenant_id=ours)
            await session.execute(statement)
