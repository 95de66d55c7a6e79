"""BM25 term statistics (collections, terms, postings); chunk vectors of 384 dimensions (MiniLM).

Existing chunk vectors were 256-wide hash vectors: they cannot be cast, so they become NULL (the
vector leg skips such chunks). Chunks indexed before this revision have no postings either: both
come back when their documents are next indexed (re-upload them). The cache's column loses its
width: it is keyed by model, and each model keeps its own vectors.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "retrieval"
DIMENSIONS = 384


def upgrade() -> None:
    op.create_table(
        "bm25_collections",
        sa.Column("collection_key", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("collection_id", sa.Text, nullable=False),
        sa.Column("chunk_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("total_length", sa.BigInteger, nullable=False, server_default="0"),
        sa.UniqueConstraint("tenant_id", "collection_id", name="uq_bm25_collections_tenant_collection"),
        schema=SCHEMA,
    )
    op.create_table(
        "bm25_terms",
        sa.Column(
            "collection_key",
            sa.BigInteger,
            sa.ForeignKey(f"{SCHEMA}.bm25_collections.collection_key", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("term", sa.Text, nullable=False),
        sa.Column("df", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("collection_key", "term"),
        schema=SCHEMA,
    )
    op.create_table(
        "bm25_postings",
        sa.Column(
            "collection_key",
            sa.BigInteger,
            sa.ForeignKey(f"{SCHEMA}.bm25_collections.collection_key", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("term", sa.Text, nullable=False),
        sa.Column("chunk_id", sa.Text, nullable=False),
        sa.Column("document_id", sa.Text, nullable=False),
        sa.Column("tf", sa.Integer, nullable=False),
        sa.Column("chunk_length", sa.Integer, nullable=False),
        sa.Column("impact", sa.REAL, nullable=False),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_bm25_postings_term_impact",
        "bm25_postings",
        ["collection_key", "term", sa.text("impact DESC")],
        schema=SCHEMA,
        postgresql_include=["chunk_id", "document_id", "tf", "chunk_length"],
    )
    op.create_index("ix_bm25_postings_document", "bm25_postings", ["collection_key", "document_id"], schema=SCHEMA)

    op.drop_index("ix_chunks_embedding", table_name="chunks", schema=SCHEMA)
    op.execute(f"ALTER TABLE {SCHEMA}.chunks ALTER COLUMN embedding TYPE vector({DIMENSIONS}) USING NULL")
    op.create_index(
        "ix_chunks_embedding",
        "chunks",
        ["embedding"],
        schema=SCHEMA,
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
        postgresql_with={"m": 16, "ef_construction": 64},
    )
    op.execute(f"ALTER TABLE {SCHEMA}.embedding_cache ALTER COLUMN embedding TYPE vector")


def downgrade() -> None:
    op.execute(f"DELETE FROM {SCHEMA}.embedding_cache WHERE vector_dims(embedding) <> 256")
    op.execute(f"ALTER TABLE {SCHEMA}.embedding_cache ALTER COLUMN embedding TYPE vector(256)")
    op.drop_index("ix_chunks_embedding", table_name="chunks", schema=SCHEMA)
    op.execute(f"ALTER TABLE {SCHEMA}.chunks ALTER COLUMN embedding TYPE vector(256) USING NULL")
    op.create_index(
        "ix_chunks_embedding",
        "chunks",
        ["embedding"],
        schema=SCHEMA,
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    for table in ("bm25_postings", "bm25_terms", "bm25_collections"):
        op.drop_table(table, schema=SCHEMA)
