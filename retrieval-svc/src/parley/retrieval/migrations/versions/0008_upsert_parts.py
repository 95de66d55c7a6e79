"""The parts of a chunk set too large for one NATS message, held until the version is whole
(indexing.py). Row-level security by tenant, as for the chunks (0003).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SCHEMA = "retrieval"
ROLE = "parley_retrieval_tenant"
TENANT = "current_setting('parley.tenant_id', true)"


def upgrade() -> None:
    op.create_table(
        "upsert_parts",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("document_id", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("tenant_id", "document_id", "version", "part"),
        schema=SCHEMA,
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {SCHEMA}.upsert_parts TO {ROLE}")
    op.execute(f"ALTER TABLE {SCHEMA}.upsert_parts ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_rows ON {SCHEMA}.upsert_parts TO {ROLE}"
        f" USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})"
    )


def downgrade() -> None:
    op.drop_table("upsert_parts", schema=SCHEMA)
