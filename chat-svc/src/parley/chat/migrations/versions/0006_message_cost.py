"""An answer's cost as usage-svc priced it, shown with the message; NULL when usage-svc could
not say. Informational: the bill is usage-svc's, from the turn's usage event.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

SCHEMA = "chat"


def upgrade() -> None:
    op.add_column("messages", sa.Column("cost_micros", sa.BigInteger, nullable=True), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("messages", "cost_micros", schema=SCHEMA)
