"""Usage, its summary, and the tenant's budget."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from pydantic import BeforeValidator

from parley.gateway.api.deps import BudgetAdmin, Deps, Reader
from parley.gateway.errors import ApiError
from parley.gateway.schemas import BudgetIn, BudgetOut, QuotaOut, SummaryOut, UsageOut, UsageRow, micros
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


def _iso_time(value: object) -> object:
    """A time is written as ISO 8601; a bare number (`0.5`) is refused, not read as an epoch."""
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("a time in ISO 8601, e.g. 2026-03-01T00:00:00Z")
    return value


IsoTime = Annotated[datetime | None, BeforeValidator(_iso_time), Query(description="ISO 8601; UTC if no zone")]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.get("/usage")
async def get_usage(
    who: Reader,
    services: Deps,
    since: IsoTime = None,
    until: IsoTime = None,
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
async def get_summary(who: Reader, services: Deps, window: Literal["24h", "7d"] = "24h") -> SummaryOut:
    """Requests, success rate, latency, tokens and prompt-cache hit rate over the window."""
    return SummaryOut.of(await services.backends.get_summary(who, window), window=window)


@router.get("/quota")
async def get_quota(who: Reader, services: Deps) -> QuotaOut:
    """This month's spend and holds against the budget; `monthly_limit_usd` is null when there is no limit."""
    return QuotaOut.of(await services.backends.check_quota(who))


@router.get("/budget")
async def get_budget(who: Reader, services: Deps) -> BudgetOut:
    """The tenant's monthly limit in USD; null when there is no limit."""
    return BudgetOut.of_quota(await services.backends.check_quota(who))


@router.put("/budget")
async def set_budget(body: BudgetIn, who: BudgetAdmin, services: Deps) -> BudgetOut:
    """Set the monthly limit. `null` removes it; `0` is a zero budget: every turn that may cost
    anything is refused with 402 (a turn on a free model, such as `local`, still runs)."""
    limit = None if body.monthly_limit_usd is None else micros(body.monthly_limit_usd)
    return BudgetOut.of(await services.backends.set_budget(who, limit))


@router.delete("/budget", status_code=status.HTTP_204_NO_CONTENT)
async def remove_budget(who: BudgetAdmin, services: Deps) -> None:
    """Remove the monthly limit (the same as PUT with null)."""
    await services.backends.set_budget(who, None)
