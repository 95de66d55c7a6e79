"""Row-level security on the gateway's tenant tables, as retrieval has it: the second lock behind
every query's tenant filter.

Transactions on one tenant's people and keys run as `parley_gateway_tenant` (no login, no
BYPASSRLS, not the tables' owner) with `parley.tenant_id` set (store.enter_tenant): the policies
show it that tenant's rows only, and none when no tenant is set. What must cross tenants runs as
the login role, the tables' owner: looking a presented key up by its hash (whose tenant is what
the lookup finds out), the rate counters, the first start's bootstrap, and the installation
owner's tenant routes.

The login role that runs this migration must be allowed to create roles (or the operator creates
`parley_gateway_tenant` beforehand and grants it to the gateway's login role).

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"

SCHEMA = "gateway"
ROLE = "parley_gateway_tenant"
TENANT = "current_setting('parley.tenant_id', true)"
POLICIES = {"tenants": "id::text", "users": "tenant_id::text", "api_keys": "tenant_id::text"}


def upgrade() -> None:
    op.execute(
        f"""DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
                CREATE ROLE {ROLE} NOLOGIN NOBYPASSRLS;
            END IF;
        END $$"""
    )
    op.execute(f"GRANT {ROLE} TO current_user")
    op.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {SCHEMA}.users, {SCHEMA}.api_keys TO {ROLE}")
    # A tenant's own row: read, and its limits and alert changed; never created or removed by it.
    op.execute(f"GRANT SELECT, UPDATE ON {SCHEMA}.tenants TO {ROLE}")
    for table, column in POLICIES.items():
        op.execute(f"ALTER TABLE {SCHEMA}.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_rows ON {SCHEMA}.{table} TO {ROLE}"
            f" USING ({column} = {TENANT}) WITH CHECK ({column} = {TENANT})"
        )


def downgrade() -> None:
    for table in POLICIES:
        op.execute(f"DROP POLICY tenant_rows ON {SCHEMA}.{table}")
        op.execute(f"ALTER TABLE {SCHEMA}.{table} DISABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {SCHEMA} FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA {SCHEMA} FROM {ROLE}")
