"""Each chunk's vector names the model that made it: a search compares only vectors of its own
model, and after a switch of embedder the service re-embeds the others in the background.

Chunks indexed before this revision get '' (no model): their vectors, if any, are re-made.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "retrieval"


def upgrade() -> None:
    op.add_column("chunks", sa.Column("embedding_model", sa.Text, nullable=False, server_default=""), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("chunks", "embedding_model", schema=SCHEMA)
