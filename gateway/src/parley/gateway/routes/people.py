"""People and their credentials: tenants (the installation's owner), users of a tenant, API keys,
the tenant's rate limits, and who the caller is. The role matrix is in docs/api.md; access.py
holds it as code. Another tenant's ids are 404 here as everywhere."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeVar

from fastapi import APIRouter, status
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.gateway import access, auth, store
from parley.gateway.access import ROLE_SCOPES, Role, role_may_grant
from parley.gateway.api.deps import CurrentPrincipal, Deps, PeopleAdmin, Reader
from parley.gateway.errors import ApiError
from parley.gateway.schemas import IdPath, Page, PageSize, PageToken, maybe_micros
from parley.gateway.schemas.people import (
    KeyBudgetIn,
    KeyCreated,
    KeyIn,
    KeyOut,
    LimitsIn,
    MeOut,
    RoleIn,
    TenantCreated,
    TenantIn,
    TenantOut,
    UserIn,
    UserOut,
)
from parley.gateway.store import Principal
from parley.kit.errors import InvalidInput
from parley.kit.paging import DEFAULT_PAGE_SIZE, Cursor, decode_token, encode_token
from parley.kit.timestamps import as_utc

router = APIRouter(prefix="/v1", tags=["people"])

Out = TypeVar("Out", bound=BaseModel)


def _owner_of_installation(who: Principal) -> None:
    if not who.installation_owner or "admin" not in who.scopes:
        raise ApiError(403, "forbidden", "only the installation's owner may create or list tenants")


@router.get("/me")
async def me(who: CurrentPrincipal, services: Deps) -> MeOut:
    """Who the credential belongs to: the tenant, the user and role, the key's scopes."""
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        user = await store.get_user(session=session, tenant_id=who.tenant_id, user_id=who.user_id)
    if user is None:
        raise ApiError(404, "not_found", "the user is gone")
    return MeOut(
        tenant_id=who.tenant_id,
        user=UserOut.model_validate(user),
        scopes=sorted(who.scopes),
        api_key_id=who.api_key_id,
        installation_owner=who.installation_owner,
    )


@router.post("/tenants", status_code=status.HTTP_201_CREATED)
async def create_tenant(body: TenantIn, who: CurrentPrincipal, services: Deps) -> TenantCreated:
    """A new tenant (a team kept apart from every other), its owner, and the owner's first API key
    (shown once). The installation's owner only."""
    _owner_of_installation(who)
    key = auth.new_api_key()
    try:
        async with services.sessions.begin() as session:
            tenant = await store.create_tenant(session=session, name=body.name)
            owner = await store.create_user(
                session=session, tenant_id=tenant.id, name=body.owner_name, role="owner", email=body.owner_email
            )
            created = await _store_key(services, session, owner, name="first key", scopes=list(access.SCOPES), key=key)
    except IntegrityError:
        raise ApiError(409, "already_exists", f"a tenant named {body.name!r} exists") from None
    return TenantCreated(
        tenant=TenantOut.of(tenant),
        owner=UserOut.model_validate(owner),
        api_key=KeyCreated.of(created, key=key),
    )


@router.get("/tenants")
async def list_tenants(who: CurrentPrincipal, services: Deps) -> Page[TenantOut]:
    """Every tenant of the installation. The installation's owner only."""
    _owner_of_installation(who)
    async with services.sessions() as session:
        found = await store.list_tenants(session=session)
    return Page(data=[TenantOut.of(tenant) for tenant in found], next_page_token=None)


@router.get("/tenant")
async def get_tenant(who: Reader, services: Deps) -> TenantOut:
    """The caller's tenant and its rate limits."""
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        tenant = await store.get_tenant(session=session, tenant_id=who.tenant_id)
    if tenant is None:
        raise ApiError(404, "not_found", "the tenant is gone")
    return TenantOut.of(tenant)


@router.put("/tenant/limits")
async def set_limits(body: LimitsIn, who: PeopleAdmin, services: Deps) -> TenantOut:
    """The tenant's rate limits per minute, each per key and per user: null takes the
    installation's default, 0 means none."""
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        tenant = await store.set_tenant_limits(session=session, tenant_id=who.tenant_id, **body.model_dump())
    if tenant is None:
        raise ApiError(404, "not_found", "the tenant is gone")
    return TenantOut.of(tenant)


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserIn, who: PeopleAdmin, services: Deps) -> UserOut:
    """Add a person to the tenant. Give them a key with `POST /v1/api-keys` and `user_id`, or let
    them sign in with single sign-on."""
    if not role_may_grant(who.rank, Role[body.role]):
        raise ApiError(403, "forbidden", "only an owner may make an owner")
    try:
        async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
            user = await store.create_user(
                session=session, tenant_id=who.tenant_id, name=body.name, role=body.role, email=body.email
            )
    except IntegrityError:
        raise ApiError(409, "already_exists", "a user with this email exists in the tenant") from None
    return UserOut.model_validate(user)


@router.get("/users")
async def list_users(
    who: PeopleAdmin, services: Deps, page_size: PageSize = DEFAULT_PAGE_SIZE, page_token: PageToken = ""
) -> Page[UserOut]:
    """The tenant's users, oldest first, a page at a time."""
    after = _cursor(page_token)
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        found = await store.list_users(session=session, tenant_id=who.tenant_id, after=after, limit=page_size + 1)
    return _page([UserOut.model_validate(user) for user in found[:page_size]], found, page_size)


@router.get("/users/{user_id}")
async def get_user(user_id: IdPath, who: PeopleAdmin, services: Deps) -> UserOut:
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        user = await store.get_user(session=session, tenant_id=who.tenant_id, user_id=_uuid(user_id))
    if user is None:
        raise ApiError(404, "not_found", f"user {user_id} not found")
    return UserOut.model_validate(user)


@router.patch("/users/{user_id}")
async def set_role(user_id: IdPath, body: RoleIn, who: PeopleAdmin, services: Deps) -> UserOut:
    """Change a user's role; it applies to their keys at once (their scopes stay, but act only as
    far as the new role goes). An owner's role is changed by an owner only, and a tenant keeps one."""
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        user = await _changeable_user(session, who, _uuid(user_id))
        if not role_may_grant(who.rank, Role[body.role]):
            raise ApiError(403, "forbidden", "only an owner may make an owner")
        if user.role == "owner" and body.role != "owner":
            await _keep_an_owner(session, who.tenant_id)
        changed = await store.set_role(session=session, tenant_id=who.tenant_id, user_id=user.id, role=body.role)
    assert changed is not None
    return UserOut.model_validate(changed)


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(user_id: IdPath, who: PeopleAdmin, services: Deps) -> None:
    """Remove a person and every key they hold (effective at once on every replica)."""
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        user = await _changeable_user(session, who, _uuid(user_id))
        if user.role == "owner":
            await _keep_an_owner(session, who.tenant_id)
        await store.delete_user(session=session, tenant_id=who.tenant_id, user_id=user.id)


@router.post("/api-keys", status_code=status.HTTP_201_CREATED)
async def create_key(body: KeyIn, who: CurrentPrincipal, services: Deps) -> KeyCreated:
    """A new API key: for the caller, or (an admin) for another user of the tenant. `key` is the
    secret, shown in this answer only; `prefix` is how to recognise it later."""
    if body.expires_at is not None and as_utc(body.expires_at) <= datetime.now(UTC):
        raise ApiError(422, "invalid_request", "expires_at must be in the future")
    key = auth.new_api_key()
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        holder = await _key_holder(session, who, body.user_id)
        allowed = ROLE_SCOPES[Role[holder.role]] & who.scopes
        scopes = sorted(allowed if body.scopes is None else set(body.scopes))
        if not set(scopes) <= allowed:
            raise ApiError(
                403, "forbidden", f"this key may hold at most these scopes: {', '.join(sorted(allowed)) or 'none'}"
            )
        created = await _store_key(
            services,
            session,
            holder,
            name=body.name,
            scopes=scopes,
            key=key,
            expires_at=body.expires_at,
            limit_micros=maybe_micros(body.monthly_limit_usd),
            alert_micros=maybe_micros(body.alert_at_usd),
        )
    return KeyCreated.of(created, key=key)


@router.get("/api-keys")
async def list_keys(
    who: CurrentPrincipal, services: Deps, page_size: PageSize = DEFAULT_PAGE_SIZE, page_token: PageToken = ""
) -> Page[KeyOut]:
    """The caller's keys (an admin: every key of the tenant), revoked ones included, without
    secrets; oldest first, a page at a time."""
    mine_only = None if who.may(access.MANAGE_PEOPLE) else who.user_id
    after = _cursor(page_token)
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        found = await store.list_keys(
            session=session, tenant_id=who.tenant_id, user_id=mine_only, after=after, limit=page_size + 1
        )
    return _page([KeyOut.of(key) for key in found[:page_size]], found, page_size)


@router.patch("/api-keys/{key_id}")
async def set_key_budget(key_id: IdPath, body: KeyBudgetIn, who: CurrentPrincipal, services: Deps) -> KeyOut:
    """A key's own monthly budget and soft alert (the key's holder, for their own keys; an admin,
    for any of the tenant's). Once the calls made with the key this month cost `monthly_limit_usd`,
    its chat turns, searches, embeddings and `artifacts?fresh=true` are refused with 402; the
    holder's other keys go on. A field left out stays as it is; null removes it."""
    mine_only = None if who.may(access.SET_BUDGET) else who.user_id
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        key = await store.get_key(session=session, tenant_id=who.tenant_id, key_id=_uuid(key_id), user_id=mine_only)
        if key is None:
            raise ApiError(404, "not_found", f"API key {key_id} not found")
        given = body.model_fields_set
        changed = await store.set_key_budget(
            session=session,
            tenant_id=who.tenant_id,
            key_id=key.id,
            limit_micros=maybe_micros(body.monthly_limit_usd)
            if "monthly_limit_usd" in given
            else key.monthly_limit_micros,
            alert_micros=maybe_micros(body.alert_at_usd) if "alert_at_usd" in given else key.alert_at_micros,
        )
    return KeyOut.of(changed)


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(key_id: IdPath, who: CurrentPrincipal, services: Deps) -> None:
    """Revoke a key (the caller's own; an admin: any of the tenant's). The next request with it,
    on any replica, is a 401."""
    mine_only = None if who.may(access.MANAGE_PEOPLE) else who.user_id
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        found = await store.revoke_key(
            session=session, tenant_id=who.tenant_id, key_id=_uuid(key_id), user_id=mine_only
        )
    if not found:
        raise ApiError(404, "not_found", f"API key {key_id} not found")


async def _store_key(
    services: Deps,
    session: AsyncSession,
    holder: store.UserRecord,
    *,
    name: str,
    scopes: list[str],
    key: str,
    expires_at: datetime | None = None,
    limit_micros: int | None = None,
    alert_micros: int | None = None,
) -> store.KeyRecord:
    return await store.create_key(
        session=session,
        tenant_id=holder.tenant_id,
        user_id=holder.id,
        name=name,
        key_hash=auth.hash_api_key(key, pepper=services.settings.api_key_pepper.get_secret_value()),
        prefix=auth.visible_prefix(key),
        scopes=scopes,
        expires_at=expires_at,
        limit_micros=limit_micros,
        alert_micros=alert_micros,
    )


async def _key_holder(session: AsyncSession, who: Principal, user_id: str | None) -> store.UserRecord:
    target = who.user_id if user_id is None else _uuid(user_id)
    if target != who.user_id and not who.may(access.MANAGE_PEOPLE):
        raise ApiError(403, "forbidden", "only an admin may make a key for someone else")
    holder = await store.get_user(session=session, tenant_id=who.tenant_id, user_id=target)
    if holder is None:
        raise ApiError(404, "not_found", f"user {user_id} not found")
    return holder


async def _changeable_user(session: AsyncSession, who: Principal, user_id: str) -> store.UserRecord:
    user = await store.get_user(session=session, tenant_id=who.tenant_id, user_id=user_id)
    if user is None:
        raise ApiError(404, "not_found", f"user {user_id} not found")
    if user.role == "owner" and who.rank < Role.owner:
        raise ApiError(403, "forbidden", "only an owner may change or remove an owner")
    return user


async def _keep_an_owner(session: AsyncSession, tenant_id: str) -> None:
    if await store.count_owners(session=session, tenant_id=tenant_id) <= 1:
        raise ApiError(409, "failed_precondition", "a tenant keeps at least one owner")


def _cursor(page_token: str) -> Cursor | None:
    try:
        return decode_token(page_token)
    except InvalidInput as error:
        raise ApiError(400, "invalid_argument", str(error)) from None


def _page(data: list[Out], found: Sequence[store.UserRecord | store.KeyRecord], page_size: int) -> Page[Out]:
    """A page of `data` (the first `page_size` of `found`, one more row asked for than shown): the
    next page starts after the last row shown, when there is one more."""
    if len(found) <= page_size:
        return Page(data=data, next_page_token=None)
    last = found[page_size - 1]
    return Page(data=data, next_page_token=encode_token(Cursor(at=last.created_at, id=uuid.UUID(last.id))))


def _uuid(value: str) -> str:
    """Ids here are UUIDs; anything else names nothing (404), rather than a database error."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ApiError(404, "not_found", f"{value} not found") from None
