"""Usage, its summary, and the tenant's budget."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from pydantic import BeforeValidator

from parley.gateway import access, store
from parley.gateway.api.deps import BudgetAdmin, Deps, Reader, Usage
from parley.gateway.errors import ApiError
from parley.gateway.schemas import IdPath, maybe_micros, maybe_usd
from parley.gateway.schemas.usage import (
    AlertIn,
    AlertOut,
    BudgetIn,
    BudgetOut,
    QuotaOut,
    SummaryOut,
    UsageOut,
    UsageRow,
    UserBudgetIn,
    UserBudgetOut,
)
from parley.kit.timestamps import as_utc, to_timestamp
from parley.v1 import usage_pb2

router = APIRouter(prefix="/v1", tags=["usage"])

GROUPS = {
    "none": usage_pb2.USAGE_GROUP_BY_UNSPECIFIED,
    "day": usage_pb2.USAGE_GROUP_BY_DAY,
    "model": usage_pb2.USAGE_GROUP_BY_MODEL,
    "user": usage_pb2.USAGE_GROUP_BY_USER,
    "kind": usage_pb2.USAGE_GROUP_BY_KIND,
    "api_key": usage_pb2.USAGE_GROUP_BY_API_KEY,
}


def _iso_time(value: object) -> object:
    """A time is written as ISO 8601; a bare number (`0.5`) is refused, not read as an epoch."""
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("a time in ISO 8601, e.g. 2026-03-01T00:00:00Z")
    return value


IsoTime = Annotated[datetime | None, BeforeValidator(_iso_time), Query(description="ISO 8601; UTC if no zone")]


@router.get("/usage")
async def get_usage(
    who: Reader,
    usage: Usage,
    since: IsoTime = None,
    until: IsoTime = None,
    group_by: Annotated[
        Literal["none", "day", "model", "user", "kind", "api_key"],
        Query(description='`api_key`: per API key (the key\'s id; "" for calls made without one, e.g. single sign-on)'),
    ] = "none",
) -> UsageOut:
    """Tokens and cost of the tenant's model calls; `since`/`until` default to the last 30 days
    (until now). `since` not before `until` is a 400."""
    # A time without a zone is UTC, the zone every stored time is in.
    until = as_utc(until) if until else datetime.now(UTC)
    since = as_utc(since) if since else until - timedelta(days=30)
    if since >= until:
        raise ApiError(400, "invalid_argument", "since must be before until")
    response = await usage.get_usage(
        who, usage_pb2.GetUsageRequest(since=to_timestamp(since), until=to_timestamp(until), group_by=GROUPS[group_by])
    )
    return UsageOut(
        since=since,
        until=until,
        group_by=group_by,
        rows=[UsageRow.of(row) for row in response.rows],
        total=UsageRow.of(response.total),
    )


@router.get("/usage/summary")
async def get_summary(who: Reader, usage: Usage, window: Literal["24h", "7d"] = "24h") -> SummaryOut:
    """Requests, success rate, latency, tokens and prompt-cache hit rate over the window."""
    return SummaryOut.of(await usage.get_summary(who, window), window=window)


@router.get("/quota")
async def get_quota(who: Reader, usage: Usage) -> QuotaOut:
    """This month's spend and holds against the budget; `monthly_limit_usd` is null when there is no limit."""
    return QuotaOut.of(await usage.check_quota(who))


@router.get("/budget")
async def get_budget(who: Reader, usage: Usage) -> BudgetOut:
    """The tenant's monthly limit in USD; null when there is no limit."""
    return BudgetOut.of(await usage.check_quota(who))


@router.put("/budget")
async def set_budget(body: BudgetIn, who: BudgetAdmin, usage: Usage) -> BudgetOut:
    """Set the monthly limit. `null` removes it; `0` is a zero budget: every turn that may cost
    anything is refused with 402 (a turn on a free model, such as `local`, still runs)."""
    return BudgetOut.of(await usage.set_budget(who, maybe_micros(body.monthly_limit_usd)))


@router.delete("/budget", status_code=status.HTTP_204_NO_CONTENT)
async def remove_budget(who: BudgetAdmin, usage: Usage) -> None:
    """Remove the monthly limit (the same as PUT with null)."""
    await usage.set_budget(who, None)


@router.get("/budget/alert")
async def get_budget_alert(who: Reader, services: Deps) -> AlertOut:
    """The tenant's soft alert: when this month's spend (holds included) reaches it, a
    `BudgetAlert` event goes out on `alerts.budget.<tenant>` and a metric counts it."""
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        limits = await store.spending_limits(session=session, tenant_id=who.tenant_id, user_id=who.user_id)
    return AlertOut(alert_at_usd=maybe_usd(limits.tenant_alert_micros))


@router.put("/budget/alert")
async def set_budget_alert(body: AlertIn, who: BudgetAdmin, services: Deps) -> AlertOut:
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        await store.set_tenant_alert(
            session=session, tenant_id=who.tenant_id, alert_micros=maybe_micros(body.alert_at_usd)
        )
    return AlertOut(alert_at_usd=body.alert_at_usd)


@router.get("/users/{user_id}/budget")
async def get_user_budget(user_id: IdPath, who: Reader, services: Deps) -> UserBudgetOut:
    """A user's own monthly budget and alert: the user themselves, or an admin."""
    target = _user_uuid(user_id)
    if target != who.user_id and not who.may(access.SET_BUDGET):
        raise ApiError(403, "forbidden", "only an admin may see another user's budget")
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        user = await store.get_user(session=session, tenant_id=who.tenant_id, user_id=target)
        limits = await store.spending_limits(session=session, tenant_id=who.tenant_id, user_id=target)
    if user is None:
        raise ApiError(404, "not_found", f"user {user_id} not found")
    return UserBudgetOut(
        user_id=target,
        monthly_limit_usd=maybe_usd(limits.user_limit_micros),
        alert_at_usd=maybe_usd(limits.user_alert_micros),
    )


@router.put("/users/{user_id}/budget")
async def set_user_budget(user_id: IdPath, body: UserBudgetIn, who: BudgetAdmin, services: Deps) -> UserBudgetOut:
    """Hold one person's spend within the tenant's: their chat turns, searches and artifacts on
    request are refused with 402 once their month's spend reaches the limit."""
    target = _user_uuid(user_id)
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        found = await store.set_user_budget(
            session=session,
            tenant_id=who.tenant_id,
            user_id=target,
            limit_micros=maybe_micros(body.monthly_limit_usd),
            alert_micros=maybe_micros(body.alert_at_usd),
        )
    if not found:
        raise ApiError(404, "not_found", f"user {user_id} not found")
    return UserBudgetOut(user_id=target, monthly_limit_usd=body.monthly_limit_usd, alert_at_usd=body.alert_at_usd)


def _user_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ApiError(404, "not_found", f"user {value} not found") from None
