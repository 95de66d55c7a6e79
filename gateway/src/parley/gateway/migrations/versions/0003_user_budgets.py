"""A user's own monthly budget and soft alert; the tenant's soft alert.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

SCHEMA = "gateway"


def upgrade() -> None:
    op.add_column("users", sa.Column("monthly_limit_micros", sa.BigInteger), schema=SCHEMA)
    op.add_column("users", sa.Column("alert_at_micros", sa.BigInteger), schema=SCHEMA)
    op.add_column("tenants", sa.Column("alert_at_micros", sa.BigInteger), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("tenants", "alert_at_micros", schema=SCHEMA)
    op.drop_column("users", "alert_at_micros", schema=SCHEMA)
    op.drop_column("users", "monthly_limit_micros", schema=SCHEMA)
