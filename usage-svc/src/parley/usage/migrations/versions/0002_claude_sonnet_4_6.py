"""Price Claude Sonnet 4.6, chat-svc's default Claude model, at Anthropic's published rates
(the same as Sonnet 4.5); without a row it would be held and billed at the dearest default.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"

SCHEMA = "usage"


def upgrade() -> None:
    # model, provider, then micro-USD per million tokens: input, output, cache read, cache write.
    op.execute(
        f"INSERT INTO {SCHEMA}.prices "
        "(model, provider, input_price, output_price, cache_read_price, cache_write_price) "
        "VALUES ('claude-sonnet-4-6', 'anthropic', 3000000, 15000000, 300000, 3750000) "
        "ON CONFLICT (model) DO NOTHING"
    )


def downgrade() -> None:
    op.execute(f"DELETE FROM {SCHEMA}.prices WHERE model = 'claude-sonnet-4-6'")
