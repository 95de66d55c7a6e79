"""Usage, its summary, and the tenant's budget."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from parley.gateway.api.deps import CurrentPrincipal, Deps
from parley.gateway.errors import ApiError
from parley.gateway.schemas import BudgetIn, QuotaOut, SummaryOut, UsageOut, UsageRow
from parley.kit.timestamps import to_timestamp
from parley.v1 import usage_pb2

router = APIRouter(prefix="/v1", tags=["usage"])

GROUPS = {
    "none": usage_pb2.USAGE_GROUP_BY_UNSPECIFIED,
    "day": usage_pb2.USAGE_GROUP_BY_DAY,
    "model": usage_pb2.USAGE_GROUP_BY_MODEL,
    "user": usage_pb2.USAGE_GROUP_BY_USER,
    "kind": usage_pb2.USAGE_GROUP_BY_KIND,
}
MICROS = 1_000_000


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.get("/usage")
async def get_usage(
    who: CurrentPrincipal,
    services: Deps,
    since: datetime | None = None,
    until: datetime | None = None,
    group_by: Annotated[Literal["none", "day", "model", "user", "kind"], Query()] = "none",
) -> UsageOut:
    """Tokens and cost of the tenant's model calls; `since`/`until` default to the last 30 days."""
    # A time without a zone is UTC, the zone every stored time is in.
    until = _utc(until) if until else datetime.now(UTC)
    since = _utc(since) if since else until - timedelta(days=30)
    if since >= until:
        raise ApiError(400, "invalid_argument", "since must be before until")
    response = await services.backends.get_usage(
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
async def get_summary(who: CurrentPrincipal, services: Deps, window: Literal["24h", "7d"] = "24h") -> SummaryOut:
    """Requests, success rate, latency, tokens and prompt-cache hit rate over the window."""
    summary = await services.backends.get_summary(who, window)
    return SummaryOut(
        window=window,
        requests=summary.requests,
        success_rate=summary.success_rate,
        latency_p50_ms=summary.latency_p50_ms,
        latency_p95_ms=summary.latency_p95_ms,
        total_tokens=summary.total_tokens,
        cache_hit_rate=summary.cache_hit_rate,
    )


@router.get("/quota")
async def get_quota(who: CurrentPrincipal, services: Deps) -> QuotaOut:
    quota = await services.backends.check_quota(who)
    return QuotaOut(
        allowed=quota.allowed,
        monthly_limit_usd=quota.limit_micros / MICROS if quota.limit_micros else None,
        spent_usd=quota.spent_micros / MICROS,
        reserved_usd=quota.reserved_micros / MICROS,
    )


@router.put("/budget")
async def set_budget(body: BudgetIn, who: CurrentPrincipal, services: Deps) -> dict[str, float]:
    if who.role != "admin":
        raise ApiError(403, "forbidden", "only an admin can set the tenant's budget")
    budget = await services.backends.set_budget(who, round(body.monthly_limit_usd * MICROS))
    return {"monthly_limit_usd": budget.monthly_limit_micros / MICROS}
