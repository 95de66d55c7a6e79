"""What a tenant reads back: usage by group, the recent summary, and the CSV export."""

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from parley.kit.db import Sessions
from parley.kit.errors import InvalidInput
from parley.usage import store
from parley.usage.store import COUNTED_TOKEN_FIELDS, EXPORT_COLUMNS, GroupBy, UsageTotals

DEFAULT_LOOKBACK = timedelta(days=30)
SUMMARY_WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class Summary:
    requests: int
    success_rate: float
    latency_p50_ms: float
    latency_p95_ms: float
    total_tokens: int
    cache_hit_rate: float


def resolve_window(*, since: datetime | None, until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    until = until or now
    since = since or until - DEFAULT_LOOKBACK
    if since >= until:
        raise InvalidInput("since must be before until")
    return since, until


def summary_window(window: str) -> timedelta:
    try:
        return SUMMARY_WINDOWS[window]
    except KeyError:
        raise InvalidInput(f"window must be one of {', '.join(SUMMARY_WINDOWS)}") from None


def combine(rows: Iterable[UsageTotals], *, group: str = "total") -> UsageTotals:
    rows = list(rows)
    counts = [field.name for field in fields(UsageTotals) if field.name != "group"]
    return UsageTotals(group=group, **{name: sum(getattr(row, name) for row in rows) for name in counts})


def cache_hit_rate(*, input_tokens: int, cache_read_tokens: int) -> float:
    """The share of prompt tokens served from the provider's cache (input tokens exclude cache reads)."""
    prompt = input_tokens + cache_read_tokens
    return cache_read_tokens / prompt if prompt else 0.0


def _cell(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return str(value)


def csv_lines(rows: Sequence[Sequence[object]], *, header: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(EXPORT_COLUMNS)
    writer.writerows([_cell(value) for value in row] for row in rows)
    return buffer.getvalue().encode()


class Reports:
    """What a tenant reads back about its usage; read-only."""

    def __init__(self, *, sessions: Sessions, export_rows_per_chunk: int) -> None:
        self._sessions = sessions
        self._export_rows_per_chunk = export_rows_per_chunk

    async def usage(
        self,
        *,
        tenant_id: str,
        since: datetime | None,
        until: datetime | None,
        group_by: GroupBy,
        now: datetime | None = None,
    ) -> tuple[list[UsageTotals], UsageTotals]:
        """Rows per group (none when ungrouped) and the total of the window."""
        since, until = resolve_window(since=since, until=until, now=now or datetime.now(UTC))
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            rows = await store.usage_totals(
                session=session, tenant_id=tenant_id, since=since, until=until, group_by=group_by
            )
        if group_by == "none":
            return [], combine(rows)
        return rows, combine(rows)

    async def summary(self, *, tenant_id: str, window: str, now: datetime | None = None) -> Summary:
        since = (now or datetime.now(UTC)) - summary_window(window)
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            figures = await store.summary_figures(session=session, tenant_id=tenant_id, since=since)
        return Summary(
            requests=figures.requests,
            success_rate=figures.successes / figures.requests if figures.requests else 0.0,
            latency_p50_ms=figures.latency_p50_ms,
            latency_p95_ms=figures.latency_p95_ms,
            total_tokens=sum(getattr(figures, name) for name in COUNTED_TOKEN_FIELDS),
            cache_hit_rate=cache_hit_rate(
                input_tokens=figures.input_tokens, cache_read_tokens=figures.cache_read_tokens
            ),
        )

    async def export_csv(
        self, *, tenant_id: str, since: datetime | None, until: datetime | None, now: datetime | None = None
    ) -> AsyncIterator[bytes]:
        """CSV of the tenant's events in the window, the header first, in chunks of rows."""
        since, until = resolve_window(since=since, until=until, now=now or datetime.now(UTC))
        header = True
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            async for rows in store.stream_events(
                session=session, tenant_id=tenant_id, since=since, until=until, batch=self._export_rows_per_chunk
            ):
                yield csv_lines(rows, header=header)
                header = False
        if header:
            yield csv_lines([], header=True)
