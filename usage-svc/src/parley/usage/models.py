"""usage-svc tables, in its own schema. Money is integer micro-USD (USD millionths)."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

metadata = MetaData(schema="usage")

# Micro-USD per million tokens.
prices = Table(
    "prices",
    metadata,
    Column("model", Text, primary_key=True),
    Column("provider", Text, nullable=False),
    Column("input_price", BigInteger, nullable=False),
    Column("output_price", BigInteger, nullable=False),
    Column("cache_read_price", BigInteger, nullable=False),
    Column("cache_write_price", BigInteger, nullable=False),  # a write that lives 5 minutes
    Column("cache_write_1h_price", BigInteger, nullable=False),  # one that lives an hour
)

budgets = Table(
    "budgets",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("monthly_limit_micros", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("monthly_limit_micros >= 0", name="budgets_limit_not_negative"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("reserved_micros", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    # NULL when the caller sent none; NULLs never collide under the unique constraint.
    Column("idempotency_key", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("settled_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('held', 'settled', 'expired')", name="reservations_status"),
    UniqueConstraint("tenant_id", "idempotency_key", name="reservations_idempotency_key"),
    Index("reservations_live", "tenant_id", "status", "expires_at"),
)

usage_events = Table(
    "usage_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    # Of cache_write_tokens, those written to live an hour (billed at cache_write_1h_price).
    Column("cache_write_1h_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_micros", BigInteger, nullable=False),
    Column("reservation_id", Text, nullable=False),
    Column("conversation_id", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("latency_ms", BigInteger, nullable=False),
    Column("success", Boolean, nullable=False),
    # Charged the whole hold because the call's true usage was lost with its replica (the conservative bill).
    Column("billed_at_hold", Boolean, nullable=False, server_default=false()),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The API key the call was made with ("" for none: single sign-on, a service's own work).
    Column("api_key_id", Text, nullable=False, server_default=""),
    Index("usage_events_by_time", "tenant_id", "occurred_at"),
    Index("usage_events_by_model", "tenant_id", "model", "occurred_at"),
    Index("usage_events_by_user", "tenant_id", "user_id", "occurred_at"),
    Index("usage_events_by_api_key", "tenant_id", "api_key_id", "occurred_at"),
)
