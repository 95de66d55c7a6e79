"""Collections, documents, their versions and chunks, and the outbox.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "ingestion"


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("tenant_id", "name", name="collections_tenant_name_key"),
        schema=SCHEMA,
    )
    op.create_index("collections_tenant_created_idx", "collections", ["tenant_id", "created_at", "id"], schema=SCHEMA)

    op.create_table(
        "documents",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column(
            "collection_id",
            sa.Uuid,
            sa.ForeignKey(f"{SCHEMA}.collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("filename", sa.Text, nullable=False, server_default=""),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("chunk_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("token_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("content_sha256", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "status IN ('QUEUED', 'CHUNKING', 'INDEXING', 'READY', 'FAILED')", name="documents_status_check"
        ),
        sa.UniqueConstraint("tenant_id", "collection_id", "title", "content_sha256", name="documents_dedup_key"),
        schema=SCHEMA,
    )
    op.create_index(
        "documents_tenant_collection_created_idx",
        "documents",
        ["tenant_id", "collection_id", "created_at", "id"],
        schema=SCHEMA,
    )

    op.create_table(
        "document_versions",
        sa.Column(
            "document_id",
            sa.Uuid,
            sa.ForeignKey(f"{SCHEMA}.documents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("content_sha256", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )

    op.create_table(
        "chunks",
        sa.Column("chunk_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("document_id", sa.Uuid, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("heading", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("token_count", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id", "version"],
            [f"{SCHEMA}.document_versions.document_id", f"{SCHEMA}.document_versions.version"],
            ondelete="CASCADE",
            name="chunks_version_fkey",
        ),
        sa.UniqueConstraint("document_id", "version", "ordinal", name="chunks_document_version_ordinal_key"),
        schema=SCHEMA,
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("msg_id", sa.Text, nullable=False, unique=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in ("outbox", "chunks", "document_versions", "documents", "collections"):
        op.drop_table(table, schema=SCHEMA)
