"""An API key's own monthly budget (hard: 402 before spending) and soft alert, in micro-USD.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

SCHEMA = "gateway"


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("monthly_limit_micros", sa.BigInteger), schema=SCHEMA)
    op.add_column("api_keys", sa.Column("alert_at_micros", sa.BigInteger), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("api_keys", "alert_at_micros", schema=SCHEMA)
    op.drop_column("api_keys", "monthly_limit_micros", schema=SCHEMA)
