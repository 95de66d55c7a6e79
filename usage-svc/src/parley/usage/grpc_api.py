"""UsageService: translation between the proto and the Budgets, Prices and Reports domain objects."""

from collections.abc import AsyncIterator
from dataclasses import asdict, fields
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from parley.kit.errors import InvalidInput
from parley.kit.identity import caller
from parley.kit.rpc import Context
from parley.kit.timestamps import to_timestamp
from parley.usage import pricing
from parley.usage.budget import Budgets, Hold
from parley.usage.prices import Prices
from parley.usage.reports import Reports
from parley.usage.store import GroupBy, UsageTotals
from parley.v1 import usage_pb2, usage_pb2_grpc

_GROUP_BY: dict[int, GroupBy] = {
    usage_pb2.USAGE_GROUP_BY_UNSPECIFIED: "none",
    usage_pb2.USAGE_GROUP_BY_DAY: "day",
    usage_pb2.USAGE_GROUP_BY_MODEL: "model",
    usage_pb2.USAGE_GROUP_BY_USER: "user",
    usage_pb2.USAGE_GROUP_BY_KIND: "kind",
    usage_pb2.USAGE_GROUP_BY_API_KEY: "api_key",
}


def _time(message: Message, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    timestamp: Timestamp = getattr(message, field)
    return timestamp.ToDatetime(tzinfo=UTC)


def _limit(message: usage_pb2.SetBudgetRequest) -> int | None:
    return message.monthly_limit_micros if message.HasField("monthly_limit_micros") else None


def _hold(request: usage_pb2.ReserveRequest) -> Hold:
    # A Hold's fields are ReserveRequest's, by name; its fallbacks are (provider, model) pairs.
    scalars = {field.name: getattr(request, field.name) for field in fields(Hold) if field.name != "fallbacks"}
    return Hold(**scalars, fallbacks=tuple((route.provider, route.model) for route in request.fallbacks))


def _row(totals: UsageTotals) -> usage_pb2.UsageRow:
    return usage_pb2.UsageRow(**asdict(totals), total_tokens=totals.total_tokens)


class UsageApi(usage_pb2_grpc.UsageServiceServicer):
    def __init__(self, *, budgets: Budgets, prices: Prices, reports: Reports) -> None:
        self._budgets = budgets
        self._prices = prices
        self._reports = reports

    async def Reserve(self, request: usage_pb2.ReserveRequest, context: Context) -> usage_pb2.ReserveResponse:
        reservation = await self._budgets.reserve(tenant_id=caller(context).tenant_id, hold=_hold(request))
        return usage_pb2.ReserveResponse(
            reservation_id=reservation.id,
            reserved_micros=reservation.reserved_micros,
            expires_at=to_timestamp(reservation.expires_at),
        )

    async def Settle(self, request: usage_pb2.SettleRequest, context: Context) -> usage_pb2.SettleResponse:
        await self._budgets.settle(tenant_id=caller(context).tenant_id, reservation_id=request.reservation_id)
        return usage_pb2.SettleResponse()

    async def CheckQuota(self, request: usage_pb2.CheckQuotaRequest, context: Context) -> usage_pb2.CheckQuotaResponse:
        quota = await self._budgets.quota(tenant_id=caller(context).tenant_id)
        return usage_pb2.CheckQuotaResponse(
            allowed=quota.allowed,
            limit_micros=quota.limit_micros,  # None leaves it unset: no limit
            spent_micros=quota.spent_micros,
            reserved_micros=quota.reserved_micros,
        )

    async def SetBudget(self, request: usage_pb2.SetBudgetRequest, context: Context) -> usage_pb2.Budget:
        limit = await self._budgets.set_limit(tenant_id=caller(context).tenant_id, monthly_limit_micros=_limit(request))
        return usage_pb2.Budget(monthly_limit_micros=limit)

    async def GetUsage(self, request: usage_pb2.GetUsageRequest, context: Context) -> usage_pb2.GetUsageResponse:
        group_by = _GROUP_BY.get(request.group_by)
        if group_by is None:
            raise InvalidInput(f"unknown group_by {request.group_by}")
        rows, total = await self._reports.usage(
            tenant_id=caller(context).tenant_id,
            since=_time(request, "since"),
            until=_time(request, "until"),
            group_by=group_by,
        )
        return usage_pb2.GetUsageResponse(rows=[_row(row) for row in rows], total=_row(total))

    async def GetSummary(self, request: usage_pb2.GetSummaryRequest, context: Context) -> usage_pb2.GetSummaryResponse:
        summary = await self._reports.summary(tenant_id=caller(context).tenant_id, window=request.window)
        return usage_pb2.GetSummaryResponse(**asdict(summary))

    async def Export(self, request: usage_pb2.ExportRequest, context: Context) -> AsyncIterator[usage_pb2.ExportChunk]:
        chunks = self._reports.export_csv(
            tenant_id=caller(context).tenant_id, since=_time(request, "since"), until=_time(request, "until")
        )
        async for chunk in chunks:
            yield usage_pb2.ExportChunk(csv=chunk)

    async def PriceUsage(self, request: usage_pb2.PriceUsageRequest, context: Context) -> usage_pb2.PriceUsageResponse:
        problem = pricing.usage_problem(request.usage)
        if problem:
            raise InvalidInput(f"usage {problem}")
        cost = await self._prices.cost(provider=request.provider, model=request.model, usage=request.usage)
        return usage_pb2.PriceUsageResponse(cost_micros=cost)
