"""An answer's usage keeps how many of its cache writes were written to live an hour (a part of
cache_write_tokens, billed at the 1-hour write price): one column per TokenUsage field.

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SCHEMA = "chat"


def upgrade() -> None:
    op.add_column(
        "messages",
        sa.Column("cache_write_1h_tokens", sa.BigInteger(), server_default="0", nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("messages", "cache_write_1h_tokens", schema=SCHEMA)
