"""Sections, and raw uploads: a version keeps the bytes it was uploaded as (a PDF or a Final Draft
file is not text), and its sections (heading path, page, scene) are stored beside its chunks.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "ingestion"


def upgrade() -> None:
    # Every stored version so far was UTF-8 text: its bytes are that text encoded.
    op.alter_column(
        "document_versions",
        "content",
        type_=sa.LargeBinary,
        postgresql_using="convert_to(content, 'UTF8')",
        schema=SCHEMA,
    )
    op.add_column("chunks", sa.Column("section_ordinal", sa.Integer, nullable=False, server_default="0"), schema=SCHEMA)
    op.create_table(
        "sections",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("document_id", sa.Uuid, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("heading", sa.Text, nullable=False),
        sa.Column("heading_path", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("page", sa.Integer, nullable=True),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("content_sha256", sa.Text, nullable=False),
        sa.Column("scene", postgresql.JSONB, nullable=True),
        sa.ForeignKeyConstraint(
            ["document_id", "version"],
            [f"{SCHEMA}.document_versions.document_id", f"{SCHEMA}.document_versions.version"],
            ondelete="CASCADE",
            name="sections_version_fkey",
        ),
        sa.UniqueConstraint("document_id", "version", "ordinal", name="sections_document_version_ordinal_key"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("sections", schema=SCHEMA)
    op.drop_column("chunks", "section_ordinal", schema=SCHEMA)
    op.alter_column(
        "document_versions",
        "content",
        type_=sa.Text,
        postgresql_using="convert_from(content, 'UTF8')",
        schema=SCHEMA,
    )
