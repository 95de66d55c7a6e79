"""Row-level security, the second lock: a transaction given to one tenant (store.enter_tenant)
sees that tenant's people and keys whatever its queries forget to filter; one that names no tenant
sees nothing; and nothing can be written into another tenant."""

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.gateway import auth, store
from parley.gateway.models import api_keys, tenants, users
from parley.kit import db

from .test_gateway_people import new_owner


async def _counts(session: AsyncSession) -> tuple[int, int, int]:
    counted = []
    for table in (tenants, users, api_keys):
        counted.append(int((await session.execute(select(func.count()).select_from(table))).scalar_one()))
    return counted[0], counted[1], counted[2]


async def test_a_query_without_a_tenant_sees_no_rows(sessions: db.Sessions, pepper: str) -> None:
    await new_owner(sessions, pepper)
    async with sessions.begin() as session:
        assert min(await _counts(session)) >= 1  # the login role, the tables' owner, sees them all
        await session.execute(text("SELECT set_config('role', :role, true)"), {"role": store.TENANT_ROLE})
        assert await _counts(session) == (0, 0, 0)


async def test_a_tenants_transaction_sees_only_its_own_rows(sessions: db.Sessions, pepper: str) -> None:
    await new_owner(sessions, pepper)  # another tenant, with a user and a key
    ours = await new_owner(sessions, pepper)
    async with sessions() as session:
        key_hash = auth.hash_api_key(ours["Authorization"].removeprefix("Bearer "), pepper=pepper)
        found = await store.key_by_hash(session=session, key_hash=key_hash)
    assert found is not None
    tenant_id = found.principal.tenant_id
    async with store.tenant_transaction(sessions, tenant_id) as session:
        # No WHERE at all: the policy is the filter.
        assert await _counts(session) == (1, 1, 1)
        assert (await session.execute(select(users.c.tenant_id))).scalars().all() == [tenant_id]


async def test_nothing_is_written_into_another_tenant(sessions: db.Sessions, pepper: str) -> None:
    await new_owner(sessions, pepper)
    async with sessions.begin() as session:
        other = await store.create_tenant(session=session, name=f"other-{id(session)}")
        mine = await store.create_tenant(session=session, name=f"mine-{id(session)}")
    with pytest.raises(DBAPIError, match="row-level security"):
        async with store.tenant_transaction(sessions, mine.id) as session:
            await store.create_user(session=session, tenant_id=other.id, name="intruder", role="owner")
