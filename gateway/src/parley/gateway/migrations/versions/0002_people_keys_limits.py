"""People, roles, API keys with scopes and expiry; per-tenant rate limits and their counters.

The bootstrap key's user becomes the first tenant's owner and the installation's owner; the
other existing admins stay admins, members stay members. Existing keys keep every scope.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0002"
down_revision = "0001"

SCHEMA = "gateway"


def upgrade() -> None:
    for column in ("requests_per_minute", "chat_requests_per_minute", "llm_tokens_per_minute"):
        op.add_column("tenants", sa.Column(column, sa.Integer), schema=SCHEMA)
    op.add_column("users", sa.Column("email", sa.Text), schema=SCHEMA)
    op.add_column("users", sa.Column("sso_subject", sa.Text), schema=SCHEMA)
    op.add_column(
        "users",
        sa.Column("installation_owner", sa.Boolean, nullable=False, server_default=sa.text("false")),
        schema=SCHEMA,
    )
    op.create_unique_constraint("users_tenant_email", "users", ["tenant_id", "email"], schema=SCHEMA)
    op.create_unique_constraint("users_tenant_sso_subject", "users", ["tenant_id", "sso_subject"], schema=SCHEMA)
    op.execute(
        f"UPDATE {SCHEMA}.users SET role = 'owner', installation_owner = true"
        f" WHERE id IN (SELECT user_id FROM {SCHEMA}.api_keys WHERE name = 'bootstrap')"
    )
    op.create_check_constraint("users_role", "users", "role IN ('owner', 'admin', 'member', 'viewer')", schema=SCHEMA)
    # Old keys were never shown with a prefix: theirs is unknown, shown as "".
    op.add_column("api_keys", sa.Column("prefix", sa.Text, nullable=False, server_default=""), schema=SCHEMA)
    op.alter_column("api_keys", "prefix", server_default=None, schema=SCHEMA)
    op.add_column(
        "api_keys",
        sa.Column("scopes", ARRAY(sa.Text), nullable=False, server_default="{read,write,chat,admin}"),
        schema=SCHEMA,
    )
    op.alter_column("api_keys", "scopes", server_default=None, schema=SCHEMA)
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    op.create_index("api_keys_tenant_user", "api_keys", ["tenant_id", "user_id"], schema=SCHEMA)
    op.create_table(
        "rate_counters",
        sa.Column("bucket", sa.Text, primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        schema=SCHEMA,
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("rate_counters", schema=SCHEMA)
    op.drop_index("api_keys_tenant_user", table_name="api_keys", schema=SCHEMA)
    for column in ("last_used_at", "expires_at", "scopes", "prefix"):
        op.drop_column("api_keys", column, schema=SCHEMA)
    op.drop_constraint("users_role", "users", schema=SCHEMA)
    op.execute(f"UPDATE {SCHEMA}.users SET role = 'admin' WHERE role = 'owner'")
    op.drop_constraint("users_tenant_sso_subject", "users", schema=SCHEMA)
    op.drop_constraint("users_tenant_email", "users", schema=SCHEMA)
    for column in ("installation_owner", "sso_subject", "email"):
        op.drop_column("users", column, schema=SCHEMA)
    for column in ("llm_tokens_per_minute", "chat_requests_per_minute", "requests_per_minute"):
        op.drop_column("tenants", column, schema=SCHEMA)
