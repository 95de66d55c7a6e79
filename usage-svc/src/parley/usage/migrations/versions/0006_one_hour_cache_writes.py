"""Cache writes that live an hour: their own price (Anthropic bills a 1-hour write at 2x input, a
5-minute one at 1.25x) and their own count on each usage event (a part of cache_write_tokens).

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

SCHEMA = "usage"


def upgrade() -> None:
    op.add_column("prices", sa.Column("cache_write_1h_price", sa.BigInteger(), nullable=True), schema=SCHEMA)
    # Anthropic's models (and the dearest default row): twice the input price. Others have no
    # 1-hour cache; their price is the write they have, never billed at another.
    op.execute(
        f"UPDATE {SCHEMA}.prices SET cache_write_1h_price = CASE "
        "WHEN provider = 'anthropic' OR model = 'default' THEN 2 * input_price ELSE cache_write_price END"
    )
    op.alter_column("prices", "cache_write_1h_price", nullable=False, schema=SCHEMA)
    op.add_column(
        "usage_events",
        sa.Column("cache_write_1h_tokens", sa.BigInteger(), server_default="0", nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("usage_events", "cache_write_1h_tokens", schema=SCHEMA)
    op.drop_column("prices", "cache_write_1h_price", schema=SCHEMA)
