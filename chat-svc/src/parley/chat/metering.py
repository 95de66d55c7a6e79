"""The usage event of a model call (a turn's answer, an intent guess, a summary, a completion), as
usage-svc records it, and the `Meter` that records one on its own: the event goes to the outbox in
a transaction of its own and the relay publishes it on `usage.recorded`. (A turn's answer and a
rolling summary put their event in the transaction that stores what the call produced instead.)"""

import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from parley.chat import metrics, store
from parley.kit.db import Sessions
from parley.kit.identity import Identity
from parley.kit.outbox import OutboxRelay
from parley.v1 import common_pb2, events_pb2


def usage_event(
    identity: Identity,
    *,
    kind: str,
    usage: common_pb2.TokenUsage,
    provider: str,
    model: str,
    reservation_id: str,
    conversation_id: str,
    latency_ms: int,
    success: bool,
    billed_at_hold: bool = False,
) -> events_pb2.UsageRecorded:
    occurred_at = Timestamp()
    occurred_at.GetCurrentTime()
    return events_pb2.UsageRecorded(
        event_id=str(uuid.uuid4()),
        tenant_id=identity.tenant_id,
        user_id=identity.user_id,
        kind=kind,
        provider=provider,
        model=model,
        usage=usage,
        reservation_id=reservation_id,
        conversation_id=conversation_id,
        request_id=identity.request_id,
        api_key_id=identity.api_key_id,  # the key that caused the call (per-key budgets); "" for none
        latency_ms=latency_ms,
        success=success,
        occurred_at=occurred_at,
        billed_at_hold=billed_at_hold,
    )


class Meter:
    def __init__(self, *, sessions: Sessions, relay: OutboxRelay) -> None:
        self._sessions = sessions
        self._relay = relay

    async def record(self, event: events_pb2.UsageRecorded) -> None:
        """Bill the call (and, when the event names a hold, release it): committed before it returns."""
        async with self._sessions.begin() as session:
            await store.enter_tenant(session=session, tenant_id=event.tenant_id)
            await store.record_usage(session=session, usage_event=event)
        self._relay.notify()
        metrics.observe_usage(event.usage, provider=event.provider, model=event.model)
