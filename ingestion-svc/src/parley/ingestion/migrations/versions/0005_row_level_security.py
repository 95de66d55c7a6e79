"""Row-level security on ingestion's tenant tables, as retrieval has it: a second lock behind
every query's tenant_id filter.

The service's transactions on tenant data run as `parley_ingestion_tenant` (no login, no
BYPASSRLS, not the tables' owner) with `parley.tenant_id` set (store.enter_tenant); the policies
show that role its tenant's rows only, and nothing when no tenant is set. The outbox (written in
those transactions, read by the relay as the login role) has no policy.

The login role that runs this migration must be allowed to create roles (or the operator creates
`parley_ingestion_tenant` beforehand and grants it to the service's login role).

Revision ID: 0005
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "ingestion"
ROLE = "parley_ingestion_tenant"
TENANT = "current_setting('parley.tenant_id', true)"
BY_TENANT = ("collections", "documents", "document_versions", "chunks", "sections", "artifacts")


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
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {SCHEMA} TO {ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {ROLE}")
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
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {SCHEMA} FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA {SCHEMA} FROM {ROLE}")
