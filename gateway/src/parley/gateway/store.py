"""All SQL of the gateway."""

import uuid
from dataclasses import dataclass

from sqlalchemy import exists, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from parley.gateway.models import api_keys, tenants, users


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved from an API key on every request."""

    tenant_id: str
    user_id: str
    role: str
    api_key_id: str


async def principal_for_key_hash(*, session: AsyncSession, key_hash: str) -> Principal | None:
    row = (
        await session.execute(
            select(api_keys.c.id, api_keys.c.tenant_id, api_keys.c.user_id, users.c.role)
            .join(users, users.c.id == api_keys.c.user_id)
            .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    return Principal(tenant_id=row.tenant_id, user_id=row.user_id, role=row.role, api_key_id=row.id)


async def any_api_key(*, session: AsyncSession) -> bool:
    return bool((await session.execute(select(exists().select_from(api_keys)))).scalar())


async def create_tenant_with_admin(*, session: AsyncSession, tenant_name: str, key_hash: str) -> Principal:
    tenant_id, user_id, key_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    await session.execute(insert(tenants).values(id=tenant_id, name=tenant_name))
    await session.execute(insert(users).values(id=user_id, tenant_id=tenant_id, name="admin", role="admin"))
    await session.execute(
        insert(api_keys).values(id=key_id, tenant_id=tenant_id, user_id=user_id, name="bootstrap", key_hash=key_hash)
    )
    return Principal(tenant_id=tenant_id, user_id=user_id, role="admin", api_key_id=key_id)


async def lock_bootstrap(*, session: AsyncSession) -> None:
    """Gateway replicas starting together take turns, so only one creates the first tenant."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('gateway:bootstrap'))"))


async def ping(*, session: AsyncSession) -> None:
    await session.execute(text("SELECT 1"))
