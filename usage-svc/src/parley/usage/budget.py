"""Budgets and the holds against them.

A tenant's month-to-date spend (UTC calendar month) plus its live holds may not pass its
monthly limit. No limit (no budget row) means unlimited; a limit of 0 is a zero budget, under
which a call that may cost anything is refused and a free call (a hold of 0, e.g. the `local`
provider's) still passes: a hold is refused only when it would take the total *past* the limit.
Reserve decides under a per-tenant transaction lock, so two concurrent reserves cannot both
take the last of a budget.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from parley.kit.db import Sessions
from parley.kit.errors import BudgetExceeded, InvalidInput, NotFound
from parley.kit.ids import as_uuid
from parley.usage import prices, pricing, store
from parley.usage.store import Reservation

reservations_decided = Counter("parley_usage_reservations_total", "Reserve decisions, by outcome", ["outcome"])


@dataclass(frozen=True, slots=True)
class Quota:
    limit_micros: int | None  # None: no limit
    spent_micros: int
    reserved_micros: int

    @property
    def allowed(self) -> bool:
        """Whether there is anything left to spend this month."""
        return self.limit_micros is None or self.spent_micros + self.reserved_micros < self.limit_micros


@dataclass(frozen=True, slots=True)
class Hold:
    """What a caller asks to hold for one model call."""

    model: str
    input_tokens: int
    max_output_tokens: int
    provider: str = ""
    idempotency_key: str = ""
    # (provider, model) of the other routes the call may take (its fallbacks): held at the dearest.
    fallbacks: tuple[tuple[str, str], ...] = ()


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def would_exceed(*, limit_micros: int | None, spent_micros: int, held_micros: int, amount_micros: int) -> bool:
    if limit_micros is None:
        return False
    return spent_micros + held_micros + amount_micros > limit_micros


def parse_id(value: str) -> str | None:
    """The canonical form of a uuid, or None when it is not one."""
    parsed = as_uuid(value)
    return None if parsed is None else str(parsed)


class Budgets:
    """Each tenant's monthly limit, and the holds Reserve places against it."""

    def __init__(self, *, sessions: Sessions, reservation_ttl: timedelta) -> None:
        self._sessions = sessions
        self._reservation_ttl = reservation_ttl

    async def reserve(self, *, tenant_id: str, hold: Hold, now: datetime | None = None) -> Reservation:
        if not hold.model:
            raise InvalidInput("model is required")
        if hold.input_tokens < 0 or hold.max_output_tokens < 0:
            raise InvalidInput("token counts must not be negative")
        if any(not model for _, model in hold.fallbacks):
            raise InvalidInput("every fallback names a model")
        now = now or datetime.now(UTC)
        async with self._sessions.begin() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            await store.lock_tenant_budget(session=session, tenant_id=tenant_id)
            if hold.idempotency_key:
                earlier = await store.find_reservation_by_key(
                    session=session, tenant_id=tenant_id, idempotency_key=hold.idempotency_key
                )
                if earlier is not None:
                    return earlier
            # The same price rows the call's UsageRecorded may be charged at: its model's, or a
            # fallback's when the call falls back (then it is billed as that model), the dearest.
            amount = 0
            for provider, model in ((hold.provider, hold.model), *hold.fallbacks):
                price = await prices.price_row(session=session, provider=provider, model=model)
                amount = max(
                    amount,
                    pricing.reservation_micros(
                        input_tokens=hold.input_tokens, max_output_tokens=hold.max_output_tokens, price=price
                    ),
                )
            await store.expire_holds(session=session, tenant_id=tenant_id, now=now)
            limit = await store.get_budget(session=session, tenant_id=tenant_id)
            if limit is not None:
                spent = await store.spent_since(session=session, tenant_id=tenant_id, since=month_start(now))
                held = await store.live_holds(session=session, tenant_id=tenant_id, now=now)
                if would_exceed(limit_micros=limit, spent_micros=spent, held_micros=held, amount_micros=amount):
                    reservations_decided.labels("refused").inc()
                    raise BudgetExceeded(
                        f"this call may cost up to {amount} micro-USD; the monthly budget has "
                        f"{max(limit - spent - held, 0)} of {limit} left"
                    )
            reservation = await store.add_reservation(
                session=session,
                reservation_id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                model=hold.model,
                reserved_micros=amount,
                idempotency_key=hold.idempotency_key or None,
                created_at=now,
                expires_at=now + self._reservation_ttl,
            )
        reservations_decided.labels("granted").inc()
        return reservation

    async def settle(self, *, tenant_id: str, reservation_id: str, now: datetime | None = None) -> None:
        canonical = parse_id(reservation_id)
        if canonical is None:
            raise NotFound(f"no reservation {reservation_id!r}")
        async with self._sessions.begin() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            found = await store.settle_reservation(
                session=session, tenant_id=tenant_id, reservation_id=canonical, now=now or datetime.now(UTC)
            )
        if not found:
            raise NotFound(f"no reservation {reservation_id!r}")

    async def quota(self, *, tenant_id: str, now: datetime | None = None) -> Quota:
        now = now or datetime.now(UTC)
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            return Quota(
                limit_micros=await store.get_budget(session=session, tenant_id=tenant_id),
                spent_micros=await store.spent_since(session=session, tenant_id=tenant_id, since=month_start(now)),
                reserved_micros=await store.live_holds(session=session, tenant_id=tenant_id, now=now),
            )

    async def set_limit(self, *, tenant_id: str, monthly_limit_micros: int | None) -> int | None:
        """Set the monthly limit; None removes it (no limit), 0 is a zero budget."""
        if monthly_limit_micros is not None and monthly_limit_micros < 0:
            raise InvalidInput("monthly_limit_micros must not be negative")
        async with self._sessions.begin() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            # Under the same lock as Reserve, so a reserve never decides against a half-changed budget.
            await store.lock_tenant_budget(session=session, tenant_id=tenant_id)
            if monthly_limit_micros is None:
                await store.delete_budget(session=session, tenant_id=tenant_id)
            else:
                await store.put_budget(session=session, tenant_id=tenant_id, monthly_limit_micros=monthly_limit_micros)
        return monthly_limit_micros
