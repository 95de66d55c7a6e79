"""Progress detail: a PARSING (and, for later artifacts, ANALYZING) status, how far the current
stage is (done of total) and what it is doing, and the stage a failed document failed in.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "ingestion"
BEFORE = ("QUEUED", "CHUNKING", "INDEXING", "READY", "FAILED")
AFTER = ("QUEUED", "PARSING", "CHUNKING", "INDEXING", "READY", "FAILED", "ANALYZING")


def _status_check(statuses: tuple[str, ...]) -> None:
    op.drop_constraint("documents_status_check", "documents", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        "documents_status_check", "documents", f"status IN ({', '.join(repr(s) for s in statuses)})", schema=SCHEMA
    )


def upgrade() -> None:
    _status_check(AFTER)
    op.add_column("documents", sa.Column("failed_stage", sa.Text, nullable=False, server_default=""), schema=SCHEMA)
    op.add_column("documents", sa.Column("done", sa.Integer, nullable=False, server_default="0"), schema=SCHEMA)
    op.add_column("documents", sa.Column("total", sa.Integer, nullable=False, server_default="0"), schema=SCHEMA)
    op.add_column("documents", sa.Column("message", sa.Text, nullable=False, server_default=""), schema=SCHEMA)


def downgrade() -> None:
    for column in ("message", "total", "done", "failed_stage"):
        op.drop_column("documents", column, schema=SCHEMA)
    op.execute(f"UPDATE {SCHEMA}.documents SET status = 'CHUNKING' WHERE status = 'PARSING'")
    op.execute(f"UPDATE {SCHEMA}.documents SET status = 'READY' WHERE status = 'ANALYZING'")
    _status_check(BEFORE)
