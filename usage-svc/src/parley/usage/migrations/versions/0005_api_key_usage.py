"""Usage events name the API key that caused them ("" for none), for per-key budgets and reports.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column(
        "usage_events",
        sa.Column("api_key_id", sa.Text(), server_default=sa.text("''"), nullable=False),
        schema="usage",
    )
    op.create_index(
        "usage_events_by_api_key", "usage_events", ["tenant_id", "api_key_id", "occurred_at"], schema="usage"
    )


def downgrade() -> None:
    op.drop_index("usage_events_by_api_key", table_name="usage_events", schema="usage")
    op.drop_column("usage_events", "api_key_id", schema="usage")
