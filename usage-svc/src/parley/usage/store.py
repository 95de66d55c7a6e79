"""All SQL of usage-svc. Every query of tenant data filters on tenant_id, in a transaction that
`enter_tenant` has given to that tenant (row-level security, migration 0004)."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Label,
    RowMapping,
    Text,
    case,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from parley.kit import db
from parley.usage.models import budgets, prices, reservations, usage_events
from parley.usage.pricing import Price
from parley.v1.common_pb2 import TokenUsage
from parley.v1.events_pb2 import UsageRecorded

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

RecordT = TypeVar("RecordT", bound="DataclassInstance")
GroupBy = Literal["none", "day", "model", "user", "kind", "api_key"]

# usage_events has a column per TokenUsage field, of the same name.
TOKEN_FIELDS = tuple(field.name for field in TokenUsage.DESCRIPTOR.fields)
# The fields that add up to a call's tokens: cache_write_1h_tokens is a part of cache_write_tokens.
COUNTED_TOKEN_FIELDS = tuple(name for name in TOKEN_FIELDS if name != "cache_write_1h_tokens")


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    model: str
    reserved_micros: int
    status: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class UsageTotals:
    group: str
    events: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int  # of cache_write_tokens
    cost_micros: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(frozen=True, slots=True)
class SummaryFigures:
    requests: int
    successes: int
    latency_p50_ms: float
    latency_p95_ms: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int


EXPORT_COLUMNS = (
    "event_id",
    "occurred_at",
    "user_id",
    "kind",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "cost_micros",
    "latency_ms",
    "success",
    "reservation_id",
    "conversation_id",
    "request_id",
)


def _record(cls: type[RecordT], row: RowMapping) -> RecordT:
    """A record from the row's columns of the same names as its fields."""
    return cls(**{field.name: row[field.name] for field in fields(cls)})


def _summed(column: str) -> Label[int]:
    # sum() of a bigint is numeric in PostgreSQL: cast back, so records hold ints.
    return func.coalesce(func.sum(usage_events.c[column]), 0).cast(BigInteger).label(column)


# The role of migration 0004's policies: no login, no BYPASSRLS, not the tables' owner.
TENANT_ROLE = "parley_usage_tenant"


async def enter_tenant(*, session: AsyncSession, tenant_id: str) -> None:
    """Give the rest of this transaction to one tenant: PostgreSQL then hides every other tenant's
    budget, holds and usage events, whatever a query's WHERE says. First thing in every transaction
    on tenant data; migrations and pricing for nobody in particular run as the login role."""
    await db.enter_tenant(session, role=TENANT_ROLE, tenant_id=tenant_id)


async def lock_tenant_budget(*, session: AsyncSession, tenant_id: str) -> None:
    """Serialize budget decisions of one tenant until the transaction ends."""
    key = func.hashtextextended(literal("usage-budget:") + tenant_id, 0)
    await session.execute(select(func.pg_advisory_xact_lock(key)))


async def get_price(*, session: AsyncSession, model: str, fallback: str) -> Price:
    rows = (await session.execute(select(prices).where(prices.c.model.in_([model, fallback])))).all()
    by_model = {row.model: row for row in rows}
    row = by_model.get(model) or by_model[fallback]
    return Price(
        model=row.model,
        input=row.input_price,
        output=row.output_price,
        cache_read=row.cache_read_price,
        cache_write=row.cache_write_price,
        cache_write_1h=row.cache_write_1h_price,
    )


async def get_budget(*, session: AsyncSession, tenant_id: str) -> int | None:
    return await session.scalar(select(budgets.c.monthly_limit_micros).where(budgets.c.tenant_id == tenant_id))


async def put_budget(*, session: AsyncSession, tenant_id: str, monthly_limit_micros: int) -> None:
    statement = insert(budgets).values(tenant_id=tenant_id, monthly_limit_micros=monthly_limit_micros)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[budgets.c.tenant_id],
            set_={"monthly_limit_micros": statement.excluded.monthly_limit_micros, "updated_at": func.now()},
        )
    )


async def delete_budget(*, session: AsyncSession, tenant_id: str) -> None:
    await session.execute(delete(budgets).where(budgets.c.tenant_id == tenant_id))


async def spent_since(*, session: AsyncSession, tenant_id: str, since: datetime) -> int:
    spent = await session.scalar(
        select(func.coalesce(func.sum(usage_events.c.cost_micros), 0)).where(
            usage_events.c.tenant_id == tenant_id, usage_events.c.occurred_at >= since
        )
    )
    return int(spent or 0)


async def live_holds(*, session: AsyncSession, tenant_id: str, now: datetime) -> int:
    held = await session.scalar(
        select(func.coalesce(func.sum(reservations.c.reserved_micros), 0)).where(
            reservations.c.tenant_id == tenant_id,
            reservations.c.status == "held",
            reservations.c.expires_at > now,
        )
    )
    return int(held or 0)


async def expire_holds(*, session: AsyncSession, tenant_id: str, now: datetime) -> None:
    await session.execute(
        update(reservations)
        .where(
            reservations.c.tenant_id == tenant_id,
            reservations.c.status == "held",
            reservations.c.expires_at <= now,
        )
        .values(status="expired")
    )


async def find_reservation_by_key(*, session: AsyncSession, tenant_id: str, idempotency_key: str) -> Reservation | None:
    row = (
        await session.execute(
            select(reservations).where(
                reservations.c.tenant_id == tenant_id, reservations.c.idempotency_key == idempotency_key
            )
        )
    ).first()
    return None if row is None else _record(Reservation, row._mapping)


async def add_reservation(
    *,
    session: AsyncSession,
    reservation_id: str,
    tenant_id: str,
    model: str,
    reserved_micros: int,
    idempotency_key: str | None,
    created_at: datetime,
    expires_at: datetime,
) -> Reservation:
    row = (
        await session.execute(
            insert(reservations)
            .values(
                id=reservation_id,
                tenant_id=tenant_id,
                model=model,
                reserved_micros=reserved_micros,
                status="held",
                idempotency_key=idempotency_key,
                created_at=created_at,
                expires_at=expires_at,
            )
            .returning(*reservations.c)
        )
    ).one()
    return _record(Reservation, row._mapping)


async def reservation_amount(*, session: AsyncSession, tenant_id: str, reservation_id: str) -> int | None:
    """What the hold was placed for, settled or not; None when the tenant has no such reservation."""
    return await session.scalar(
        select(reservations.c.reserved_micros).where(
            reservations.c.tenant_id == tenant_id, reservations.c.id == reservation_id
        )
    )


async def settle_reservation(*, session: AsyncSession, tenant_id: str, reservation_id: str, now: datetime) -> bool:
    """Release a hold; False when the tenant has no such reservation. Settling twice is harmless."""
    exists = await session.scalar(
        select(reservations.c.id).where(reservations.c.tenant_id == tenant_id, reservations.c.id == reservation_id)
    )
    if exists is None:
        return False
    await session.execute(
        update(reservations)
        .where(
            reservations.c.tenant_id == tenant_id,
            reservations.c.id == reservation_id,
            reservations.c.status != "settled",
        )
        .values(status="settled", settled_at=now)
    )
    return True


async def add_usage_event(
    *, session: AsyncSession, event: UsageRecorded, cost_micros: int, occurred_at: datetime
) -> bool:
    """Insert one usage event; False when its event_id was recorded before.

    Columns are filled by name from the event's scalar fields and its TokenUsage, so a field
    added to both the message and the table needs no edit here.
    """
    scalars = {
        field.name: getattr(event, field.name) for field in event.DESCRIPTOR.fields if field.message_type is None
    }
    tokens = {name: getattr(event.usage, name) for name in TOKEN_FIELDS}
    values = {**scalars, **tokens, "cost_micros": cost_micros, "occurred_at": occurred_at}
    inserted = await session.scalar(
        insert(usage_events)
        .values({name: value for name, value in values.items() if name in usage_events.c})
        .on_conflict_do_nothing(index_elements=[usage_events.c.event_id])
        .returning(usage_events.c.event_id)
    )
    return inserted is not None


def _group_key(group_by: GroupBy) -> ColumnElement[str]:
    match group_by:
        case "day":
            return func.to_char(func.timezone("UTC", usage_events.c.occurred_at), "YYYY-MM-DD")
        case "model":
            return usage_events.c.model
        case "user":
            return usage_events.c.user_id
        case "kind":
            return usage_events.c.kind
        case "api_key":
            return usage_events.c.api_key_id
        case "none":
            return literal("", Text)


async def usage_totals(
    *, session: AsyncSession, tenant_id: str, since: datetime, until: datetime, group_by: GroupBy
) -> list[UsageTotals]:
    group = _group_key(group_by).label("group")
    statement = select(
        group,
        func.count().label("events"),
        *(_summed(name) for name in TOKEN_FIELDS),
        _summed("cost_micros"),
    ).where(
        usage_events.c.tenant_id == tenant_id,
        usage_events.c.occurred_at >= since,
        usage_events.c.occurred_at < until,
    )
    if group_by != "none":
        statement = statement.group_by(group).order_by(group)
    # Without grouping the aggregate always yields exactly one row, zeros when there were no events.
    return [_record(UsageTotals, row) for row in (await session.execute(statement)).mappings()]


async def summary_figures(*, session: AsyncSession, tenant_id: str, since: datetime) -> SummaryFigures:
    latency = usage_events.c.latency_ms
    row = (
        (
            await session.execute(
                select(
                    func.count().label("requests"),
                    func.coalesce(func.sum(case((usage_events.c.success, 1), else_=0)), 0)
                    .cast(BigInteger)
                    .label("successes"),
                    func.coalesce(func.percentile_cont(0.5).within_group(latency), 0.0).label("latency_p50_ms"),
                    func.coalesce(func.percentile_cont(0.95).within_group(latency), 0.0).label("latency_p95_ms"),
                    *(_summed(name) for name in TOKEN_FIELDS),
                ).where(usage_events.c.tenant_id == tenant_id, usage_events.c.occurred_at >= since)
            )
        )
        .mappings()
        .one()
    )
    return _record(SummaryFigures, row)


async def stream_events(
    *, session: AsyncSession, tenant_id: str, since: datetime, until: datetime, batch: int
) -> AsyncIterator[list[tuple[object, ...]]]:
    """The tenant's events in the window, oldest first, each as its EXPORT_COLUMNS values, read
    through a server-side cursor in batches."""
    statement = (
        select(*(usage_events.c[name] for name in EXPORT_COLUMNS))
        .where(
            usage_events.c.tenant_id == tenant_id,
            usage_events.c.occurred_at >= since,
            usage_events.c.occurred_at < until,
        )
        .order_by(usage_events.c.occurred_at, usage_events.c.event_id)
        .execution_options(yield_per=batch)
    )
    result = await session.stream(statement)
    async for partition in result.partitions(batch):
        yield [tuple(row) for row in partition]
