"""Usage events say when they charged the whole hold: the conservative bill of a call whose true
usage was lost with the replica that ran it.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column(
        "usage_events",
        sa.Column("billed_at_hold", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema="usage",
    )


def downgrade() -> None:
    op.drop_column("usage_events", "billed_at_hold", schema="usage")
