"""The usage event of a model call (a turn's answer, an intent guess, a summary), as usage-svc records it."""

import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from parley.kit.identity import Identity
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
        latency_ms=latency_ms,
        success=success,
        occurred_at=occurred_at,
    )
