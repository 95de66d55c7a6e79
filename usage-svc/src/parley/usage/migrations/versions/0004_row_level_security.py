"""Row-level security on usage's tenant tables, as retrieval and ingestion have it: a second lock
behind every query's tenant_id filter.

The service's transactions on one tenant's budget, holds and usage events run as
`parley_usage_tenant` (no login, no BYPASSRLS, not the tables' owner) with `parley.tenant_id` set
(store.enter_tenant); the policies show that role its tenant's rows only, and nothing when no
tenant is set. The role may only read the price list (installation-wide, not a tenant's) and may
not delete a usage event or a hold: money is appended and settled, never erased by a tenant's
transaction. Pricing a call for nobody in particular (Prices.cost) reads the price list as the
login role.

The login role that runs this migration must be allowed to create roles (or the operator creates
`parley_usage_tenant` beforehand and grants it to the service's login role).

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "usage"
ROLE = "parley_usage_tenant"
TENANT = "current_setting('parley.tenant_id', true)"
GRANTS = {
    "prices": "SELECT",
    "budgets": "SELECT, INSERT, UPDATE, DELETE",
    "reservations": "SELECT, INSERT, UPDATE",
    "usage_events": "SELECT, INSERT",
}
BY_TENANT = ("budgets", "reservations", "usage_events")


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
    for table, privileges in GRANTS.items():
        op.execute(f"GRANT {privileges} ON {SCHEMA}.{table} TO {ROLE}")
    for table in BY_TENANT:
        op.execute(f"ALTER TABLE {SCHEMA}.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_rows ON {SCHEMA}.{table} TO {ROLE}"
            f" USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})"
        )


def downgrade() -> None:
    for table in BY_TENANT:
        op.execute(f"DROP POLICY tenant_rows ON {SCHEMA}.{table}")
        op.execute(f"ALTER TABLE {SCHEMA}.{table} DISABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {SCHEMA} FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA {SCHEMA} FROM {ROLE}")
