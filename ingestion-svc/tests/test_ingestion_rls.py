"""Row-level security, the second lock behind every query's tenant filter (migration 0005): a
transaction given to one tenant sees that tenant's rows only, whatever its query forgets; one
that names no tenant sees none."""

import uuid
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.ingestion
from parley.ingestion import store
from parley.ingestion.catalog import Collections
from parley.ingestion.models import collections
from parley.kit import db


async def test_a_query_without_a_tenant_sees_no_rows(engine: AsyncEngine) -> None:
    await db.migrate(engine, schema="ingestion", migrations=Path(parley.ingestion.__file__).parent / "migrations")
    sessions = db.session_factory(engine)
    catalog = Collections(sessions=sessions, notify_outbox=lambda: None)
    ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    await catalog.create(tenant_id=ours, name="manuals", description="")
    await catalog.create(tenant_id=theirs, name="manuals", description="")

    async def count(*, tenant_id: str | None) -> int:
        async with sessions.begin() as session:
            if tenant_id is None:
                await session.execute(text("SELECT set_config('role', :role, true)"), {"role": store.TENANT_ROLE})
            else:
                await store.enter_tenant(session=session, tenant_id=tenant_id)
            # No WHERE at all: what the policy lets through.
            return int((await session.execute(select(func.count()).select_from(collections))).scalar_one())

    assert await count(tenant_id=None) == 0
    assert await count(tenant_id=ours) == 1
    assert await count(tenant_id=theirs) == 1
    async with sessions() as session:  # the login role, the tables' owner
        assert (await session.execute(select(func.count()).select_from(collections))).scalar_one() >= 2
