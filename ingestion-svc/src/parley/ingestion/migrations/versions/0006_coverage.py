"""Artifacts of kind `coverage`: a screenplay's coverage report (coverage.py) joins the kinds the
CHECK constraint allows.

Revision ID: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "ingestion"
BEFORE = "kind IN ('scene_card', 'outline', 'character_sheet', 'plot_thread')"
AFTER = "kind IN ('scene_card', 'outline', 'character_sheet', 'plot_thread', 'coverage')"


def upgrade() -> None:
    op.drop_constraint("artifacts_kind_check", "artifacts", schema=SCHEMA, type_="check")
    op.create_check_constraint("artifacts_kind_check", "artifacts", AFTER, schema=SCHEMA)


def downgrade() -> None:
    op.execute(f"DELETE FROM {SCHEMA}.artifacts WHERE kind = 'coverage'")
    op.drop_constraint("artifacts_kind_check", "artifacts", schema=SCHEMA, type_="check")
    op.create_check_constraint("artifacts_kind_check", "artifacts", BEFORE, schema=SCHEMA)
