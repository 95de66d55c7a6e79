"""UsageService: translation between the proto and the domain modules."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from parley.kit.db import Sessions
from parley.kit.errors import InvalidInput
from parley.kit.identity import caller
from parley.kit.timestamps import to_timestamp
from parley.usage import budget, reports
from parley.usage.config import Settings
from parley.usage.store import GroupBy, UsageTotals
from parley.v1 import usage_pb2, usage_pb2_grpc

_GROUP_BY: dict[int, GroupBy] = {
    usage_pb2.USAGE_GROUP_BY_UNSPECIFIED: "none",
    usage_pb2.USAGE_GROUP_BY_DAY: "day",
    usage_pb2.USAGE_GROUP_BY_MODEL: "model",
    usage_pb2.USAGE_GROUP_BY_USER: "user",
    usage_pb2.USAGE_GROUP_BY_KIND: "kind",
}


def _time(message: Message, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    timestamp: Timestamp = getattr(message, field)
    return timestamp.ToDatetime(tzinfo=UTC)


def _row(totals: UsageTotals) -> usage_pb2.UsageRow:
    return usage_pb2.UsageRow(
        group=totals.group,
        events=totals.events,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        cache_read_tokens=totals.cache_read_tokens,
        cache_write_tokens=totals.cache_write_tokens,
        total_tokens=totals.total_tokens,
        cost_micros=totals.cost_micros,
    )


class UsageApi(usage_pb2_grpc.UsageServiceServicer):
    def __init__(self, sessions: Sessions, settings: Settings) -> None:
        self._sessions = sessions
        self._reservation_ttl = timedelta(seconds=settings.reservation_ttl_seconds)
        self._export_rows_per_chunk = settings.export_rows_per_chunk

    async def Reserve(
        self, request: usage_pb2.ReserveRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.ReserveResponse:
        reservation = await budget.reserve(
            sessions=self._sessions,
            tenant_id=caller(context).tenant_id,
            model=request.model,
            input_tokens=request.input_tokens,
            max_output_tokens=request.max_output_tokens,
            idempotency_key=request.idempotency_key,
            ttl=self._reservation_ttl,
        )
        return usage_pb2.ReserveResponse(
            reservation_id=reservation.id,
            reserved_micros=reservation.reserved_micros,
            expires_at=to_timestamp(reservation.expires_at),
        )

    async def Settle(
        self, request: usage_pb2.SettleRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.SettleResponse:
        await budget.settle(
            sessions=self._sessions, tenant_id=caller(context).tenant_id, reservation_id=request.reservation_id
        )
        return usage_pb2.SettleResponse()

    async def CheckQuota(
        self, request: usage_pb2.CheckQuotaRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.CheckQuotaResponse:
        quota = await budget.check_quota(sessions=self._sessions, tenant_id=caller(context).tenant_id)
        return usage_pb2.CheckQuotaResponse(
            allowed=quota.allowed,
            limit_micros=quota.limit_micros or 0,
            spent_micros=quota.spent_micros,
            reserved_micros=quota.reserved_micros,
        )

    async def SetBudget(
        self, request: usage_pb2.SetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.Budget:
        limit = await budget.set_budget(
            sessions=self._sessions,
            tenant_id=caller(context).tenant_id,
            monthly_limit_micros=request.monthly_limit_micros,
        )
        return usage_pb2.Budget(monthly_limit_micros=limit)

    async def GetUsage(
        self, request: usage_pb2.GetUsageRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.GetUsageResponse:
        group_by = _GROUP_BY.get(request.group_by)
        if group_by is None:
            raise InvalidInput(f"unknown group_by {request.group_by}")
        rows, total = await reports.get_usage(
            sessions=self._sessions,
            tenant_id=caller(context).tenant_id,
            since=_time(request, "since"),
            until=_time(request, "until"),
            group_by=group_by,
        )
        return usage_pb2.GetUsageResponse(rows=[_row(row) for row in rows], total=_row(total))

    async def GetSummary(
        self, request: usage_pb2.GetSummaryRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.GetSummaryResponse:
        summary = await reports.get_summary(
            sessions=self._sessions, tenant_id=caller(context).tenant_id, window=request.window
        )
        return usage_pb2.GetSummaryResponse(
            requests=summary.requests,
            success_rate=summary.success_rate,
            latency_p50_ms=summary.latency_p50_ms,
            latency_p95_ms=summary.latency_p95_ms,
            total_tokens=summary.total_tokens,
            cache_hit_rate=summary.cache_hit_rate,
        )

    async def Export(
        self, request: usage_pb2.ExportRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[usage_pb2.ExportChunk]:
        chunks = reports.export_csv(
            sessions=self._sessions,
            tenant_id=caller(context).tenant_id,
            since=_time(request, "since"),
            until=_time(request, "until"),
            rows_per_chunk=self._export_rows_per_chunk,
        )
        async for chunk in chunks:
            yield usage_pb2.ExportChunk(csv=chunk)
