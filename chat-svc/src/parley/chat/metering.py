"""The usage event of a model call (a turn's answer, an intent guess, a summary, a completion), as
usage-svc records it, and the `Meter` that records one on its own: the event goes to the outbox in
a transaction of its own and the relay publishes it on `usage.recorded`. (A turn's answer and a
rolling summary put their event in the transaction that stores what the call produced instead.)"""

import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from parley.chat import metrics, store
from parley.chat.providers import FailedAttempt
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
    event_id: str = "",
) -> events_pb2.UsageRecorded:
    """`event_id`: usage-svc records each once; a fresh one unless the caller names the call (a
    failed attempt's, `attempt_event_id`, so that billing it again changes nothing)."""
    occurred_at = Timestamp()
    occurred_at.GetCurrentTime()
    return events_pb2.UsageRecorded(
        event_id=event_id or str(uuid.uuid4()),
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


# uuid5 namespace of failed attempts' event ids.
_ATTEMPTS = uuid.UUID("5b0c1f0e-6f8a-4c53-9c1e-4a1d2f6b7e90")


def attempt_event_id(call_id: str, number: int) -> str:
    """The usage event id of a call's `number`-th failed attempt (FailedAttempt): the same for the
    same call and attempt, so a replayed or re-sent bill is recorded once. `call_id` names the
    call: a turn's id (with its round), a completion's hold."""
    return str(uuid.uuid5(_ATTEMPTS, f"{call_id}:failed-attempt:{number}"))


def attempt_event(
    identity: Identity, attempt: FailedAttempt, *, kind: str, call_id: str, conversation_id: str = ""
) -> events_pb2.UsageRecorded:
    """A failed attempt's usage event: unsuccessful, at its own provider's and model's price, and
    naming no hold (its event would release the hold the call still runs under: the hold is sized
    to cover it, `providers.billed_calls`)."""
    return usage_event(
        identity,
        kind=kind,
        usage=attempt.usage,
        provider=attempt.provider,
        model=attempt.model,
        reservation_id="",
        conversation_id=conversation_id,
        latency_ms=0,
        success=False,
        event_id=attempt_event_id(call_id, attempt.number),
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
