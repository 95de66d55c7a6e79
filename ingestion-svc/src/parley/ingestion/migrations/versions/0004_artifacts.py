"""Artifacts: a document's scene cards, outline, character sheets and plot threads, each with the
version it was made from, its token count and model, and how stale it is; and a screenplay's
analysis state (its growth: empty, partial, analyzed) with the version its staleness is counted to.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "ingestion"


def upgrade() -> None:
    op.add_column("documents", sa.Column("analysis_state", sa.Text, nullable=False, server_default=""), schema=SCHEMA)
    op.add_column(
        "documents", sa.Column("analysis_version", sa.Integer, nullable=False, server_default="0"), schema=SCHEMA
    )
    op.create_check_constraint(
        "documents_analysis_state_check",
        "documents",
        "analysis_state IN ('', 'empty', 'partial', 'analyzed')",
        schema=SCHEMA,
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column(
            "document_id",
            sa.Uuid,
            sa.ForeignKey(f"{SCHEMA}.documents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("content", postgresql.JSONB, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("document_version", sa.Integer, nullable=False),
        sa.Column("source_sha256", sa.Text, nullable=False, server_default=""),
        sa.Column("changed_scenes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stale", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("document_id", "kind", "key", name="artifacts_document_kind_key_key"),
        sa.CheckConstraint(
            "kind IN ('scene_card', 'outline', 'character_sheet', 'plot_thread')", name="artifacts_kind_check"
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("artifacts", schema=SCHEMA)
    op.drop_constraint("documents_analysis_state_check", "documents", schema=SCHEMA, type_="check")
    op.drop_column("documents", "analysis_version", schema=SCHEMA)
    op.drop_column("documents", "analysis_state", schema=SCHEMA)
