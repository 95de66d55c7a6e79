"""All SQL of the gateway: tenants, users, API keys, and the rate limiter's counters.

One tenant's people and keys are read and written in a `tenant_transaction` (row-level security,
migration 0004); the key lookup, the counters and the installation's tenant routes run as the
login role."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from parley.gateway.access import SCOPES, Principal
from parley.gateway.models import api_keys, rate_counters, tenants, users
from parley.kit import db
from parley.kit.db import Sessions
from parley.kit.paging import Cursor

__all__ = ["Principal"]


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: str
    name: str
    created_at: datetime
    requests_per_minute: int | None
    chat_requests_per_minute: int | None
    llm_tokens_per_minute: int | None


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    tenant_id: str
    name: str
    role: str
    email: str | None
    sso_subject: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    tenant_id: str
    user_id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    monthly_limit_micros: int | None
    alert_at_micros: int | None


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """What the tenant set; None is the installation's default."""

    requests_per_minute: int | None = None
    chat_requests_per_minute: int | None = None
    llm_tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class KeyMatch:
    principal: Principal
    last_used_at: datetime | None
    limits: TenantLimits


_TENANT_COLUMNS = (
    tenants.c.id,
    tenants.c.name,
    tenants.c.created_at,
    tenants.c.requests_per_minute,
    tenants.c.chat_requests_per_minute,
    tenants.c.llm_tokens_per_minute,
)
_USER_COLUMNS = (
    users.c.id,
    users.c.tenant_id,
    users.c.name,
    users.c.role,
    users.c.email,
    users.c.sso_subject,
    users.c.created_at,
)
_KEY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.tenant_id,
    api_keys.c.user_id,
    api_keys.c.name,
    api_keys.c.prefix,
    api_keys.c.scopes,
    api_keys.c.created_at,
    api_keys.c.expires_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
    api_keys.c.monthly_limit_micros,
    api_keys.c.alert_at_micros,
)


TENANT_ROLE = "parley_gateway_tenant"


async def enter_tenant(*, session: AsyncSession, tenant_id: str) -> None:
    """Give the rest of this transaction to one tenant: PostgreSQL then hides every other tenant's
    people and keys, whatever a query's WHERE says (migration 0004). First thing in every
    transaction on one tenant's rows."""
    await db.enter_tenant(session, role=TENANT_ROLE, tenant_id=tenant_id)


@asynccontextmanager
async def tenant_transaction(sessions: Sessions, tenant_id: str) -> AsyncIterator[AsyncSession]:
    """A transaction given to `tenant_id` (enter_tenant), committed when the block ends."""
    async with sessions.begin() as session:
        await enter_tenant(session=session, tenant_id=tenant_id)
        yield session


# Keys


async def key_by_hash(*, session: AsyncSession, key_hash: str) -> KeyMatch | None:
    """The live key with this keyed hash: not revoked, not expired (by the database's clock, so
    every replica agrees), with its user's current role."""
    row = (
        await session.execute(
            select(
                api_keys.c.id,
                api_keys.c.tenant_id,
                api_keys.c.user_id,
                api_keys.c.scopes,
                api_keys.c.last_used_at,
                users.c.role,
                users.c.installation_owner,
                tenants.c.requests_per_minute,
                tenants.c.chat_requests_per_minute,
                tenants.c.llm_tokens_per_minute,
            )
            .join(users, users.c.id == api_keys.c.user_id)
            .join(tenants, tenants.c.id == api_keys.c.tenant_id)
            .where(
                api_keys.c.key_hash == key_hash,
                api_keys.c.revoked_at.is_(None),
                or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > func.now()),
            )
        )
    ).first()
    if row is None:
        return None
    principal = Principal(
        tenant_id=row.tenant_id,
        user_id=row.user_id,
        role=row.role,
        api_key_id=row.id,
        scopes=frozenset(row.scopes),
        installation_owner=row.installation_owner,
    )
    limits = TenantLimits(row.requests_per_minute, row.chat_requests_per_minute, row.llm_tokens_per_minute)
    return KeyMatch(principal=principal, last_used_at=row.last_used_at, limits=limits)


async def touch_key(*, session: AsyncSession, key_id: str, every_seconds: int) -> None:
    """Record the key's use, at most once per `every_seconds`: a write per request would cost
    more than knowing the minute a key was last used is worth."""
    await session.execute(
        update(api_keys)
        .where(
            api_keys.c.id == key_id,
            or_(
                api_keys.c.last_used_at.is_(None),
                api_keys.c.last_used_at < func.now() - text(f"interval '{int(every_seconds)} seconds'"),
            ),
        )
        .values(last_used_at=func.now())
    )


async def create_key(
    *,
    session: AsyncSession,
    tenant_id: str,
    user_id: str,
    name: str,
    key_hash: str,
    prefix: str,
    scopes: list[str],
    expires_at: datetime | None,
    limit_micros: int | None = None,
    alert_micros: int | None = None,
) -> KeyRecord:
    row = (
        await session.execute(
            insert(api_keys)
            .values(
                id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                user_id=user_id,
                name=name,
                key_hash=key_hash,
                prefix=prefix,
                scopes=scopes,
                expires_at=expires_at,
                monthly_limit_micros=limit_micros,
                alert_at_micros=alert_micros,
            )
            .returning(*_KEY_COLUMNS)
        )
    ).one()
    return KeyRecord(**row._mapping)


def _after(created_at: ColumnElement[datetime], row_id: ColumnElement[str], cursor: Cursor) -> ColumnElement[bool]:
    """Rows after the cursor, in (created_at, id) order."""
    at, after_id = cursor.at, str(cursor.id)
    return or_(created_at > at, and_(created_at == at, row_id > after_id))


async def list_keys(
    *, session: AsyncSession, tenant_id: str, user_id: str | None, after: Cursor | None = None, limit: int | None = None
) -> list[KeyRecord]:
    """Oldest first; `after` the cursor's (created_at, id) when given, at most `limit`."""
    query = select(*_KEY_COLUMNS).where(api_keys.c.tenant_id == tenant_id)
    if user_id is not None:
        query = query.where(api_keys.c.user_id == user_id)
    if after is not None:
        query = query.where(_after(api_keys.c.created_at, api_keys.c.id, after))
    rows = await session.execute(query.order_by(api_keys.c.created_at, api_keys.c.id).limit(limit))
    return [KeyRecord(**row._mapping) for row in rows]


async def get_key(*, session: AsyncSession, tenant_id: str, key_id: str, user_id: str | None) -> KeyRecord | None:
    """A key of the tenant (of `user_id` when given), revoked or not."""
    query = select(*_KEY_COLUMNS).where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id)
    if user_id is not None:
        query = query.where(api_keys.c.user_id == user_id)
    row = (await session.execute(query)).first()
    return None if row is None else KeyRecord(**row._mapping)


async def set_key_budget(
    *, session: AsyncSession, tenant_id: str, key_id: str, limit_micros: int | None, alert_micros: int | None
) -> KeyRecord:
    row = (
        await session.execute(
            update(api_keys)
            .where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id)
            .values(monthly_limit_micros=limit_micros, alert_at_micros=alert_micros)
            .returning(*_KEY_COLUMNS)
        )
    ).one()
    return KeyRecord(**row._mapping)


async def revoke_key(*, session: AsyncSession, tenant_id: str, key_id: str, user_id: str | None) -> bool:
    """Revoke a key of the tenant (of `user_id` when given). True if the key exists; revoking a
    revoked key again keeps its first time."""
    conditions = [api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id]
    if user_id is not None:
        conditions.append(api_keys.c.user_id == user_id)
    found = await session.execute(
        update(api_keys)
        .where(*conditions)
        .values(revoked_at=func.coalesce(api_keys.c.revoked_at, func.now()))
        .returning(api_keys.c.id)
    )
    return found.first() is not None


async def any_api_key(*, session: AsyncSession) -> bool:
    return bool((await session.execute(select(exists().select_from(api_keys)))).scalar())


# Tenants and users


async def create_tenant(*, session: AsyncSession, name: str) -> TenantRecord:
    row = (
        await session.execute(insert(tenants).values(id=str(uuid.uuid4()), name=name).returning(*_TENANT_COLUMNS))
    ).one()
    return TenantRecord(**row._mapping)


async def tenant_named(*, session: AsyncSession, name: str) -> TenantRecord | None:
    row = (await session.execute(select(*_TENANT_COLUMNS).where(tenants.c.name == name))).first()
    return None if row is None else TenantRecord(**row._mapping)


def limits_of(tenant: TenantRecord) -> TenantLimits:
    return TenantLimits(tenant.requests_per_minute, tenant.chat_requests_per_minute, tenant.llm_tokens_per_minute)


async def get_tenant(*, session: AsyncSession, tenant_id: str) -> TenantRecord | None:
    row = (await session.execute(select(*_TENANT_COLUMNS).where(tenants.c.id == tenant_id))).first()
    return None if row is None else TenantRecord(**row._mapping)


async def list_tenants(*, session: AsyncSession) -> list[TenantRecord]:
    rows = await session.execute(select(*_TENANT_COLUMNS).order_by(tenants.c.created_at, tenants.c.id))
    return [TenantRecord(**row._mapping) for row in rows]


async def set_tenant_limits(
    *,
    session: AsyncSession,
    tenant_id: str,
    requests_per_minute: int | None,
    chat_requests_per_minute: int | None,
    llm_tokens_per_minute: int | None,
) -> TenantRecord | None:
    row = (
        await session.execute(
            update(tenants)
            .where(tenants.c.id == tenant_id)
            .values(
                requests_per_minute=requests_per_minute,
                chat_requests_per_minute=chat_requests_per_minute,
                llm_tokens_per_minute=llm_tokens_per_minute,
            )
            .returning(*_TENANT_COLUMNS)
        )
    ).first()
    return None if row is None else TenantRecord(**row._mapping)


async def create_user(
    *,
    session: AsyncSession,
    tenant_id: str,
    name: str,
    role: str,
    email: str | None = None,
    sso_subject: str | None = None,
    installation_owner: bool = False,
) -> UserRecord:
    row = (
        await session.execute(
            insert(users)
            .values(
                id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                name=name,
                role=role,
                email=email,
                sso_subject=sso_subject,
                installation_owner=installation_owner,
            )
            .returning(*_USER_COLUMNS)
        )
    ).one()
    return UserRecord(**row._mapping)


async def get_user(*, session: AsyncSession, tenant_id: str, user_id: str) -> UserRecord | None:
    row = (
        await session.execute(select(*_USER_COLUMNS).where(users.c.tenant_id == tenant_id, users.c.id == user_id))
    ).first()
    return None if row is None else UserRecord(**row._mapping)


async def list_users(
    *, session: AsyncSession, tenant_id: str, after: Cursor | None = None, limit: int | None = None
) -> list[UserRecord]:
    """Oldest first; `after` the cursor's (created_at, id) when given, at most `limit`."""
    query = select(*_USER_COLUMNS).where(users.c.tenant_id == tenant_id)
    if after is not None:
        query = query.where(_after(users.c.created_at, users.c.id, after))
    rows = await session.execute(query.order_by(users.c.created_at, users.c.id).limit(limit))
    return [UserRecord(**row._mapping) for row in rows]


async def set_role(*, session: AsyncSession, tenant_id: str, user_id: str, role: str) -> UserRecord | None:
    row = (
        await session.execute(
            update(users)
            .where(users.c.tenant_id == tenant_id, users.c.id == user_id)
            .values(role=role)
            .returning(*_USER_COLUMNS)
        )
    ).first()
    return None if row is None else UserRecord(**row._mapping)


async def delete_user(*, session: AsyncSession, tenant_id: str, user_id: str) -> bool:
    """The user and (by cascade) their keys: nothing they held lets anyone in any more."""
    found = await session.execute(
        delete(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id).returning(users.c.id)
    )
    return found.first() is not None


async def count_owners(*, session: AsyncSession, tenant_id: str) -> int:
    found = await session.execute(
        select(func.count()).select_from(users).where(users.c.tenant_id == tenant_id, users.c.role == "owner")
    )
    return int(found.scalar_one())


async def sso_user(*, session: AsyncSession, tenant_id: str, subject: str) -> UserRecord | None:
    row = (
        await session.execute(
            select(*_USER_COLUMNS).where(users.c.tenant_id == tenant_id, users.c.sso_subject == subject)
        )
    ).first()
    return None if row is None else UserRecord(**row._mapping)


async def upsert_sso_user(
    *, session: AsyncSession, tenant_id: str, subject: str, name: str, email: str | None, role: str
) -> UserRecord:
    """The user an identity provider vouches for, created on first sight; the role follows the
    provider's claim on every sign-in, so a demotion there is a demotion here."""
    row = (
        await session.execute(
            pg_insert(users)
            .values(id=str(uuid.uuid4()), tenant_id=tenant_id, name=name, role=role, email=email, sso_subject=subject)
            .on_conflict_do_update(constraint="users_tenant_sso_subject", set_={"role": role, "name": name})
            .returning(*_USER_COLUMNS)
        )
    ).one()
    return UserRecord(**row._mapping)


@dataclass(frozen=True, slots=True)
class SpendingLimits:
    """In micro-USD; None: not set."""

    user_limit_micros: int | None = None
    user_alert_micros: int | None = None
    tenant_alert_micros: int | None = None
    key_limit_micros: int | None = None
    key_alert_micros: int | None = None


async def spending_limits(
    *, session: AsyncSession, tenant_id: str, user_id: str, api_key_id: str | None = None
) -> SpendingLimits:
    """The user's, the tenant's and (when the call is made with one) the API key's."""
    key = api_keys.alias("presented")
    row = (
        await session.execute(
            select(
                users.c.monthly_limit_micros,
                users.c.alert_at_micros,
                tenants.c.alert_at_micros.label("tenant"),
                key.c.monthly_limit_micros.label("key_limit"),
                key.c.alert_at_micros.label("key_alert"),
            )
            .join(tenants, tenants.c.id == users.c.tenant_id)
            .outerjoin(key, and_(key.c.id == api_key_id, key.c.user_id == users.c.id))
            .where(users.c.tenant_id == tenant_id, users.c.id == user_id)
        )
    ).first()
    if row is None:
        return SpendingLimits()
    return SpendingLimits(row.monthly_limit_micros, row.alert_at_micros, row.tenant, row.key_limit, row.key_alert)


async def set_user_budget(
    *, session: AsyncSession, tenant_id: str, user_id: str, limit_micros: int | None, alert_micros: int | None
) -> bool:
    found = await session.execute(
        update(users)
        .where(users.c.tenant_id == tenant_id, users.c.id == user_id)
        .values(monthly_limit_micros=limit_micros, alert_at_micros=alert_micros)
        .returning(users.c.id)
    )
    return found.first() is not None


async def set_tenant_alert(*, session: AsyncSession, tenant_id: str, alert_micros: int | None) -> None:
    await session.execute(update(tenants).where(tenants.c.id == tenant_id).values(alert_at_micros=alert_micros))


async def create_tenant_with_admin(*, session: AsyncSession, tenant_name: str, key_hash: str) -> Principal:
    """A tenant with one admin holding an every-scope key (tests and tools)."""
    tenant = await create_tenant(session=session, name=tenant_name)
    user = await create_user(session=session, tenant_id=tenant.id, name="admin", role="admin")
    key = await create_key(
        session=session,
        tenant_id=tenant.id,
        user_id=user.id,
        name="admin",
        key_hash=key_hash,
        prefix="",
        scopes=list(SCOPES),
        expires_at=None,
    )
    return Principal(tenant_id=tenant.id, user_id=user.id, role="admin", api_key_id=key.id)


async def lock_bootstrap(*, session: AsyncSession) -> None:
    """Gateway replicas starting together take turns, so only one creates the first tenant."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('gateway:bootstrap'))"))


async def ping(*, session: AsyncSession) -> None:
    await session.execute(text("SELECT 1"))


# Rate limits


async def count_in_window(*, session: AsyncSession, bucket: str, window_start: datetime, amount: int) -> int:
    """Add `amount` to the bucket's window and answer the new total, atomically across replicas
    (the row lock serialises concurrent increments of one bucket)."""
    found = await session.execute(
        pg_insert(rate_counters)
        .values(bucket=bucket, window_start=window_start, count=amount)
        .on_conflict_do_update(
            index_elements=[rate_counters.c.bucket, rate_counters.c.window_start],
            set_={"count": rate_counters.c.count + amount},
        )
        .returning(rate_counters.c.count)
    )
    return int(found.scalar_one())


@dataclass(frozen=True, slots=True)
class Counted:
    """Buckets' totals in the current window, and the window, by the database's clock."""

    totals: dict[str, int]
    window_start: datetime
    now: datetime


async def count_now(*, session: AsyncSession, buckets: list[str], amount: int) -> Counted:
    """Add `amount` to each bucket's current window (a fixed minute on the database's clock) and
    answer the new totals: one statement, whatever the number of buckets. Rows are written in the
    order given (callers sort them), so two requests never lock the same buckets crosswise."""
    window = func.date_trunc("minute", func.now())
    rows = (
        await session.execute(
            pg_insert(rate_counters)
            .values([{"bucket": bucket, "window_start": window, "count": amount} for bucket in buckets])
            .on_conflict_do_update(
                index_elements=[rate_counters.c.bucket, rate_counters.c.window_start],
                set_={"count": rate_counters.c.count + amount},
            )
            .returning(rate_counters.c.bucket, rate_counters.c.count, rate_counters.c.window_start, func.now())
        )
    ).all()
    return Counted({row[0]: int(row[1]) for row in rows}, rows[0][2], rows[0][3])


async def read_window(*, session: AsyncSession, buckets: list[str], window_start: datetime) -> dict[str, int]:
    rows = await session.execute(
        select(rate_counters.c.bucket, rate_counters.c.count).where(
            rate_counters.c.bucket.in_(buckets), rate_counters.c.window_start == window_start
        )
    )
    return {bucket: int(count) for bucket, count in rows}


async def forget_windows_before(*, session: AsyncSession, before: datetime) -> None:
    await session.execute(delete(rate_counters).where(rate_counters.c.window_start < before))
