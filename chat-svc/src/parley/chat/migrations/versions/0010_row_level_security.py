"""Row-level security on chat's tenant tables, as retrieval and ingestion have it: a second lock
behind every query's tenant_id filter.

The service's transactions on one tenant's conversations, messages and turns run as
`parley_chat_tenant` (no login, no BYPASSRLS, not the tables' owner) with `parley.tenant_id` set
(store.enter_tenant); the policies show that role its tenant's rows only, and nothing when no
tenant is set. Which member of the tenant may read a conversation stays the queries' filter on its
owner. What crosses tenants runs as the login role, the tables' owner: the outbox relay (the
outbox, written in the tenants' transactions, has no policy), the lease sweep's look for lapsed
turns (each is then settled in a transaction given to its tenant) and the renewal of this
replica's leases.

The login role that runs this migration must be allowed to create roles (or the operator creates
`parley_chat_tenant` beforehand and grants it to the service's login role).

Revision ID: 0010
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SCHEMA = "chat"
ROLE = "parley_chat_tenant"
TENANT = "current_setting('parley.tenant_id', true)"
BY_TENANT = ("conversations", "messages", "turns")


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
