"""Incomplete answers: a provider that fails after the first token leaves a partial answer, kept
and billed, and marked so a reader knows it stops short.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

SCHEMA = "chat"


def upgrade() -> None:
    op.add_column(
        "messages",
        sa.Column("incomplete", sa.Boolean, nullable=False, server_default=sa.false()),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("messages", "incomplete", schema=SCHEMA)
