"""The prompt cache's needs on messages: an answer's usage keeps how many of its cache writes were
written to live an hour (a part of cache_write_tokens, billed at the 1-hour write price: one column
per TokenUsage field), and a question keeps the text the model read for it — with the passages and
open section sent with it — and those passages, so later turns send the conversation as it was.

Revision ID: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SCHEMA = "chat"


def upgrade() -> None:
    op.add_column(
        "messages",
        sa.Column("cache_write_1h_tokens", sa.BigInteger(), server_default="0", nullable=False),
        schema=SCHEMA,
    )
    op.add_column("messages", sa.Column("sent_text", sa.Text(), server_default="", nullable=False), schema=SCHEMA)
    op.add_column("messages", sa.Column("sent_passages", JSONB(), server_default="[]", nullable=False), schema=SCHEMA)


def downgrade() -> None:
    for column in ("sent_passages", "sent_text", "cache_write_1h_tokens"):
        op.drop_column("messages", column, schema=SCHEMA)
