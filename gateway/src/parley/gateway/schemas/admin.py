"""Operators' routes (routes/admin.py)."""

from datetime import datetime

from parley.gateway.schemas import FromProto


class DeadLetter(FromProto):
    """A message a service's consumer kept failing on and set aside; `seq` names it for a replay."""

    seq: int
    consumer: str
    document_id: str
    version: int
    subject: str
    deliveries: int
    reason: str
    parked_at: datetime | None
