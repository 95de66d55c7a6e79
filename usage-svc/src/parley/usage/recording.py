"""Recording usage events: each event_id once, priced, and its hold released in the same transaction."""

import logging
from datetime import UTC, datetime

from prometheus_client import Counter

from parley.kit.db import Sessions
from parley.usage import prices, pricing, store
from parley.usage.budget import parse_id
from parley.v1.events_pb2 import UsageRecorded

log = logging.getLogger(__name__)

events_recorded = Counter("parley_usage_events_total", "usage.recorded events handled, by outcome", ["outcome"])


class MalformedEvent(ValueError):
    """An event no redelivery can fix; the consumer parks it after its deliveries run out."""


def _validate(event: UsageRecorded) -> None:
    if not event.event_id or not event.tenant_id:
        raise MalformedEvent("usage event without event_id or tenant_id")
    problem = pricing.usage_problem(event.usage)
    if problem:
        raise MalformedEvent(f"usage event {event.event_id} {problem}")


class Recorder:
    """Turns usage.recorded events into priced rows, releasing each event's hold."""

    def __init__(self, *, sessions: Sessions) -> None:
        self._sessions = sessions

    async def record(self, event: UsageRecorded, *, now: datetime | None = None) -> bool:
        """Record one event; False when it was recorded before (a redelivery), which changes nothing."""
        _validate(event)
        now = now or datetime.now(UTC)
        occurred_at = event.occurred_at.ToDatetime(tzinfo=UTC) if event.HasField("occurred_at") else now
        async with self._sessions.begin() as session:
            await store.enter_tenant(session=session, tenant_id=event.tenant_id)
            cost = await prices.usage_cost(
                session=session, provider=event.provider, model=event.model, usage=event.usage
            )
            if event.billed_at_hold:
                # The conservative bill: the true usage died with the replica; the hold bounds it.
                reservation_id = parse_id(event.reservation_id)
                held = reservation_id and await store.reservation_amount(
                    session=session, tenant_id=event.tenant_id, reservation_id=reservation_id
                )
                cost = max(cost, held or 0)
            inserted = await store.add_usage_event(
                session=session,
                event=event,
                cost_micros=cost,
                occurred_at=occurred_at,
            )
            if inserted and event.reservation_id:
                reservation_id = parse_id(event.reservation_id)
                found = reservation_id is not None and await store.settle_reservation(
                    session=session, tenant_id=event.tenant_id, reservation_id=reservation_id, now=now
                )
                if not found:
                    # The cost is recorded either way; a hold we cannot find will expire on its own.
                    log.warning(
                        "usage event names an unknown reservation",
                        extra={"fields": {"event_id": event.event_id, "reservation_id": event.reservation_id}},
                    )
        events_recorded.labels("recorded" if inserted else "duplicate").inc()
        return inserted
