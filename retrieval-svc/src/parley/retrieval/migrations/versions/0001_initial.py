"""The chunk index, indexed document versions, collection tombstones, the embedding cache, the outbox."""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import TSVECTOR

from parley.kit.outbox import outbox_columns

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "retrieval"
DIMENSIONS = 256


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")

    op.create_table(
        "chunks",
        sa.Column("chunk_id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("collection_id", sa.Text, nullable=False),
        sa.Column("document_id", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("document_title", sa.Text, nullable=False, server_default=""),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("heading", sa.Text, nullable=False, server_default=""),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("token_count", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False, server_default=""),
        sa.Column(
            "tsv",
            TSVECTOR,
            sa.Computed("to_tsvector('english', heading || ' ' || text)", persisted=True),
            nullable=False,
        ),
        sa.Column("embedding", Vector(DIMENSIONS), nullable=True),
        schema=SCHEMA,
    )
    op.create_index("ix_chunks_tsv", "chunks", ["tsv"], schema=SCHEMA, postgresql_using="gin")
    op.create_index(
        "ix_chunks_embedding",
        "chunks",
        ["embedding"],
        schema=SCHEMA,
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.create_index(
        "ix_chunks_tenant_document_ordinal", "chunks", ["tenant_id", "document_id", "ordinal"], schema=SCHEMA
    )
    op.create_index("ix_chunks_tenant_collection", "chunks", ["tenant_id", "collection_id"], schema=SCHEMA)

    op.create_table(
        "indexed_documents",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("document_id", sa.Text, nullable=False),
        sa.Column("collection_id", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("tenant_id", "document_id"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_indexed_documents_tenant_collection", "indexed_documents", ["tenant_id", "collection_id"], schema=SCHEMA
    )

    op.create_table(
        "deleted_collections",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("collection_id", sa.Text, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("tenant_id", "collection_id"),
        schema=SCHEMA,
    )

    op.create_table(
        "embedding_cache",
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("embedding", Vector(DIMENSIONS), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("model", "content_hash"),
        schema=SCHEMA,
    )

    op.create_table("outbox", *outbox_columns(), schema=SCHEMA)


def downgrade() -> None:
    for table in ("outbox", "embedding_cache", "deleted_collections", "indexed_documents", "chunks"):
        op.drop_table(table, schema=SCHEMA)
