"""How an answer's prompt was built (intent, parts, trims, cache reads and writes), kept with it.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"

SCHEMA = "chat"


def upgrade() -> None:
    op.add_column("messages", sa.Column("context_used", JSONB, nullable=True), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("messages", "context_used", schema=SCHEMA)
