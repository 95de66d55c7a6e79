"""BM25 change tracking for the in-memory keyword index (keyword_index.py): a collection's
`generation`, bumped by every write of its postings, and per document the generation that last
changed it, so a replica holding the collection's postings in memory reads only what changed
since it last looked. Row-level security as for the other BM25 tables (0003): visible when the
collection row is.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA = "retrieval"
ROLE = "parley_retrieval_tenant"


def upgrade() -> None:
    op.add_column(
        "bm25_collections", sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"), schema=SCHEMA
    )
    op.create_table(
        "bm25_document_changes",
        sa.Column(
            "collection_key",
            sa.BigInteger,
            sa.ForeignKey(f"{SCHEMA}.bm25_collections.collection_key", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("document_id", sa.Text, nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("collection_key", "document_id"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_bm25_document_changes_generation",
        "bm25_document_changes",
        ["collection_key", "generation"],
        schema=SCHEMA,
    )
    visible = (
        f"EXISTS (SELECT FROM {SCHEMA}.bm25_collections AS c"
        f" WHERE c.collection_key = bm25_document_changes.collection_key)"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {SCHEMA}.bm25_document_changes TO {ROLE}")
    op.execute(f"ALTER TABLE {SCHEMA}.bm25_document_changes ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_rows ON {SCHEMA}.bm25_document_changes TO {ROLE}"
        f" USING ({visible}) WITH CHECK ({visible})"
    )


def downgrade() -> None:
    op.drop_table("bm25_document_changes", schema=SCHEMA)
    op.drop_column("bm25_collections", "generation", schema=SCHEMA)
