"""The outbox keeps what NATS refused: attempts, the last refusal, and when a row was parked
(kit.outbox: a row refused past its bound is parked, not retried for ever). IF NOT EXISTS: where
0001 builds the outbox from kit.outbox's columns, a new database has them already.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEMA = "retrieval"


def upgrade() -> None:
    op.execute(
        f"ALTER TABLE {SCHEMA}.outbox ADD COLUMN IF NOT EXISTS attempts INTEGER NOT NULL DEFAULT 0,"
        " ADD COLUMN IF NOT EXISTS last_error TEXT,"
        " ADD COLUMN IF NOT EXISTS parked_at TIMESTAMP WITH TIME ZONE"
    )


def downgrade() -> None:
    for column in ("parked_at", "last_error", "attempts"):
        op.drop_column("outbox", column, schema=SCHEMA)
