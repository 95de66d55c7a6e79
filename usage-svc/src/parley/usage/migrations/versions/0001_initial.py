"""Prices (seeded), budgets, reservations and usage events.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0001"
down_revision = None

SCHEMA = "usage"

# model, provider, then micro-USD per million tokens: input, output, cache read, cache write.
SEED_PRICES = [
    ("local", "local", 0, 0, 0, 0),
    ("claude-sonnet-4-5", "anthropic", 3_000_000, 15_000_000, 300_000, 3_750_000),
    ("claude-haiku-4-5", "anthropic", 1_000_000, 5_000_000, 100_000, 1_250_000),
    ("gpt-4o", "openai", 2_500_000, 10_000_000, 1_250_000, 2_500_000),
    ("gpt-4o-mini", "openai", 150_000, 600_000, 75_000, 150_000),
    ("text-embedding-3-small", "openai", 20_000, 0, 0, 0),
    # A model not in the table is charged at this, the dearest price, never at nothing.
    ("default", "", 15_000_000, 75_000_000, 1_500_000, 18_750_000),
]


def upgrade() -> None:
    prices = op.create_table(
        "prices",
        sa.Column("model", sa.Text, primary_key=True),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("input_price", sa.BigInteger, nullable=False),
        sa.Column("output_price", sa.BigInteger, nullable=False),
        sa.Column("cache_read_price", sa.BigInteger, nullable=False),
        sa.Column("cache_write_price", sa.BigInteger, nullable=False),
        schema=SCHEMA,
    )
    op.bulk_insert(
        prices,
        [
            {
                "model": model,
                "provider": provider,
                "input_price": input_price,
                "output_price": output_price,
                "cache_read_price": cache_read_price,
                "cache_write_price": cache_write_price,
            }
            for model, provider, input_price, output_price, cache_read_price, cache_write_price in SEED_PRICES
        ],
    )
    op.create_table(
        "budgets",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("monthly_limit_micros", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("monthly_limit_micros >= 0", name="budgets_limit_not_negative"),
        schema=SCHEMA,
    )
    op.create_table(
        "reservations",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("reserved_micros", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('held', 'settled', 'expired')", name="reservations_status"),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="reservations_idempotency_key"),
        schema=SCHEMA,
    )
    op.create_index("reservations_live", "reservations", ["tenant_id", "status", "expires_at"], schema=SCHEMA)
    op.create_table(
        "usage_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_micros", sa.BigInteger, nullable=False),
        sa.Column("reservation_id", sa.Text, nullable=False),
        sa.Column("conversation_id", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("latency_ms", sa.BigInteger, nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_index("usage_events_by_time", "usage_events", ["tenant_id", "occurred_at"], schema=SCHEMA)
    op.create_index("usage_events_by_model", "usage_events", ["tenant_id", "model", "occurred_at"], schema=SCHEMA)
    op.create_index("usage_events_by_user", "usage_events", ["tenant_id", "user_id", "occurred_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("usage_events", schema=SCHEMA)
    op.drop_table("reservations", schema=SCHEMA)
    op.drop_table("budgets", schema=SCHEMA)
    op.drop_table("prices", schema=SCHEMA)
