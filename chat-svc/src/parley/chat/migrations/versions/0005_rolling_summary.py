"""A conversation's rolling summary: its older messages, folded into a few sentences the prompt
carries in their place.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

SCHEMA = "chat"


def upgrade() -> None:
    op.add_column("conversations", sa.Column("summary", sa.Text, nullable=False, server_default=""), schema=SCHEMA)
    op.add_column(
        "conversations",
        sa.Column("summarized_messages", sa.Integer, nullable=False, server_default="0"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("conversations", "summarized_messages", schema=SCHEMA)
    op.drop_column("conversations", "summary", schema=SCHEMA)
