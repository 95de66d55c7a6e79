"""Vectors per model: `chunk_embeddings` (chunk, model, tenant, vector of any width) replaces
`chunks.embedding` and `chunks.embedding_model`, so a switch of model keeps the previous model's
vectors searchable while the new ones are made.

Existing vectors move over under the model that made them; chunks with no model ('') get no row
and are embedded at the next start. The per-model HNSW indexes are not created here: model names
and widths are configuration, so the service creates the configured model's at start
(`CREATE INDEX CONCURRENTLY IF NOT EXISTS`, store.ensure_vector_index). Row-level security as in
0003.
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector

revision = "0006"
# The lead re-chains this after 0005 (scene filters) when both branches are merged.
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "retrieval"
ROLE = "parley_retrieval_tenant"
TENANT = "current_setting('parley.tenant_id', true)"
OLD_DIMENSIONS = 384


def upgrade() -> None:
    op.create_table(
        "chunk_embeddings",
        sa.Column(
            "chunk_id",
            sa.Text,
            sa.ForeignKey(f"{SCHEMA}.chunks.chunk_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("embedding", Vector(), nullable=True),
        sa.PrimaryKeyConstraint("chunk_id", "model"),
        schema=SCHEMA,
    )
    op.execute(
        f"INSERT INTO {SCHEMA}.chunk_embeddings (chunk_id, model, tenant_id, embedding)"
        f" SELECT chunk_id, embedding_model, tenant_id, embedding FROM {SCHEMA}.chunks WHERE embedding_model <> ''"
    )
    op.drop_index("ix_chunks_embedding", table_name="chunks", schema=SCHEMA)
    op.drop_column("chunks", "embedding", schema=SCHEMA)
    op.drop_column("chunks", "embedding_model", schema=SCHEMA)

    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {SCHEMA}.chunk_embeddings TO {ROLE}")
    op.execute(f"ALTER TABLE {SCHEMA}.chunk_embeddings ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_rows ON {SCHEMA}.chunk_embeddings TO {ROLE}"
        f" USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})"
    )


def downgrade() -> None:
    op.add_column("chunks", sa.Column("embedding_model", sa.Text, nullable=False, server_default=""), schema=SCHEMA)
    op.add_column("chunks", sa.Column("embedding", Vector(OLD_DIMENSIONS), nullable=True), schema=SCHEMA)
    # One vector per chunk fits the old column: one of its 384-wide ones, if it has any.
    op.execute(
        f"""UPDATE {SCHEMA}.chunks AS c
            SET embedding = e.embedding::vector({OLD_DIMENSIONS}), embedding_model = e.model
            FROM (
                SELECT DISTINCT ON (chunk_id) chunk_id, model, embedding FROM {SCHEMA}.chunk_embeddings
                WHERE embedding IS NULL OR vector_dims(embedding) = {OLD_DIMENSIONS}
                ORDER BY chunk_id, model
            ) AS e
            WHERE c.chunk_id = e.chunk_id"""
    )
    op.create_index(
        "ix_chunks_embedding",
        "chunks",
        ["embedding"],
        schema=SCHEMA,
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
        postgresql_with={"m": 16, "ef_construction": 64},
    )
    op.drop_table("chunk_embeddings", schema=SCHEMA)
