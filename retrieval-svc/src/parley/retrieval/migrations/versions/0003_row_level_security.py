"""Row-level security on the tenant tables: a second lock behind every query's tenant_id filter.

The service's transactions on tenant data run as `parley_retrieval_tenant` (no login, no
BYPASSRLS, not the tables' owner) with `parley.tenant_id` set (store.enter_tenant); the policies
show that role the rows of that tenant only, and nothing when no tenant is set. BM25's terms and
postings carry no tenant_id: they are visible when their collection row is. The embedding cache
(not tenant data) and the outbox (read by the relay) have no policy.

The login role that runs this migration must be allowed to create roles (or the operator creates
`parley_retrieval_tenant` beforehand and grants it to the service's login role).
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "retrieval"
ROLE = "parley_retrieval_tenant"
TENANT = "current_setting('parley.tenant_id', true)"
BY_TENANT = ("chunks", "indexed_documents", "deleted_collections", "bm25_collections")
BY_COLLECTION = ("bm25_terms", "bm25_postings")


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
    for table in BY_COLLECTION:
        visible = f"EXISTS (SELECT FROM {SCHEMA}.bm25_collections AS c WHERE c.collection_key = {table}.collection_key)"
        op.execute(f"ALTER TABLE {SCHEMA}.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tenant_rows ON {SCHEMA}.{table} TO {ROLE} USING ({visible}) WITH CHECK ({visible})")


def downgrade() -> None:
    for table in (*BY_TENANT, *BY_COLLECTION):
        op.execute(f"DROP POLICY tenant_rows ON {SCHEMA}.{table}")
        op.execute(f"ALTER TABLE {SCHEMA}.{table} DISABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {SCHEMA} FROM {ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {SCHEMA} FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA {SCHEMA} FROM {ROLE}")
