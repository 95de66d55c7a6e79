"""Turn leases: the replica running a turn renews `lease_expires_at`; every replica settles the
running turns whose lease ran out (their replica died), charging the hold the turn names, so the
turn keeps what settling it needs: the user, the reservation, the provider and model, and what
the provider reported once it did (billed instead of the hold). The running-turns index moves from
`created_at` to the lease.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"

SCHEMA = "chat"


def upgrade() -> None:
    for name in ("user_id", "reservation_id", "provider", "model"):
        op.add_column("turns", sa.Column(name, sa.Text(), server_default="", nullable=False), schema=SCHEMA)
    op.add_column(
        "turns",
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=SCHEMA,
    )
    op.add_column("turns", sa.Column("reported_usage", postgresql.JSONB(), nullable=True), schema=SCHEMA)
    op.drop_index("turns_running", table_name="turns", schema=SCHEMA)
    op.create_index(
        "turns_running", "turns", ["lease_expires_at"], schema=SCHEMA, postgresql_where=sa.text("state = 'running'")
    )


def downgrade() -> None:
    op.drop_index("turns_running", table_name="turns", schema=SCHEMA)
    op.create_index(
        "turns_running", "turns", ["created_at"], schema=SCHEMA, postgresql_where=sa.text("state = 'running'")
    )
    for name in ("reported_usage", "lease_expires_at", "model", "provider", "reservation_id", "user_id"):
        op.drop_column("turns", name, schema=SCHEMA)
