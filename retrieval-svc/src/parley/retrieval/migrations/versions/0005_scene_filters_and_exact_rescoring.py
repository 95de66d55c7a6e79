"""Screenplay fields on chunks (scene number, characters, pages: search filters and hits), and the
postings index the keyword leg's exact rescoring reads (bm25.py).

Chunks indexed before this revision get no scene, no characters and no pages: they come with the
document's next version. Chunks indexed before postings existed (0002) get theirs from the
service at start (Indexer.backfill_postings), not here: the analysis is the service's.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "retrieval"


def upgrade() -> None:
    op.add_column("chunks", sa.Column("scene_number", sa.Text, nullable=False, server_default=""), schema=SCHEMA)
    op.add_column(
        "chunks",
        sa.Column("characters", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'::text[]")),
        schema=SCHEMA,
    )
    op.add_column("chunks", sa.Column("page_start", sa.Integer, nullable=False, server_default="0"), schema=SCHEMA)
    op.add_column("chunks", sa.Column("page_end", sa.Integer, nullable=False, server_default="0"), schema=SCHEMA)
    op.create_index("ix_chunks_characters", "chunks", ["characters"], schema=SCHEMA, postgresql_using="gin")
    op.create_index(
        "ix_bm25_postings_term_chunk",
        "bm25_postings",
        ["collection_key", "term", "chunk_id"],
        schema=SCHEMA,
        postgresql_include=["tf", "chunk_length"],
    )


def downgrade() -> None:
    op.drop_index("ix_bm25_postings_term_chunk", table_name="bm25_postings", schema=SCHEMA)
    op.drop_index("ix_chunks_characters", table_name="chunks", schema=SCHEMA)
    for column in ("page_end", "page_start", "characters", "scene_number"):
        op.drop_column("chunks", column, schema=SCHEMA)
