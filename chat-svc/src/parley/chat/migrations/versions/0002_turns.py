"""Turns: every started turn, so its events can be told apart from a turn that never existed.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002"
down_revision = "0001"

SCHEMA = "chat"


def upgrade() -> None:
    op.create_table(
        "turns",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column(
            "conversation_id",
            UUID(as_uuid=False),
            sa.ForeignKey(f"{SCHEMA}.conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_index("turns_by_conversation", "turns", ["tenant_id", "conversation_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("turns", schema=SCHEMA)
