"""The turns still running, by when they began: every replica looks for those its dead peers left
running (`TurnRunner.sweep_abandoned`) once a minute, and a partial index keeps that from reading
every turn ever taken.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

SCHEMA = "chat"


def upgrade() -> None:
    op.create_index(
        "turns_running", "turns", ["created_at"], schema=SCHEMA, postgresql_where=sa.text("state = 'running'")
    )


def downgrade() -> None:
    op.drop_index("turns_running", table_name="turns", schema=SCHEMA)
