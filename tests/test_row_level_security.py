"""Row-level security in every service (issue 15, point 6): on a schema built by a service's
migrations alone, every table with a `tenant_id` has row-level security on and a policy for the
service's tenant role, and that role can neither log in, bypass the policies, nor own the tables.
A table a later revision adds without its policy fails here, not in production."""

import pytest
from sqlalchemy import text

from parley.kit import db
from parley.kit.migrations import ServiceSchema, scratch_database
from parley.kit.testing import Infra

SERVICES = ["gateway", "ingestion", "retrieval", "chat", "usage"]
# Tables that carry a tenant_id but are not a tenant's rows to hide (none so far); say why here.
EXEMPT: dict[str, set[str]] = {}

TENANT_TABLES = text(
    """SELECT c.relname AS name, c.relrowsecurity AS secured, pg_get_userbyid(c.relowner) AS owner,
              ARRAY(SELECT unnest(p.polroles)::regrole::text
                    FROM pg_policy AS p WHERE p.polrelid = c.oid) AS policy_roles
       FROM pg_class AS c
       JOIN pg_namespace AS n ON n.oid = c.relnamespace
       WHERE n.nspname = :schema AND c.relkind = 'r'
         AND EXISTS (SELECT FROM pg_attribute AS a
                     WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
       ORDER BY c.relname"""
)


@pytest.mark.parametrize("name", SERVICES)
async def test_every_tenant_table_has_row_level_security_for_the_services_tenant_role(infra: Infra, name: str) -> None:
    service = ServiceSchema.of(name)
    role = f"parley_{name}_tenant"
    async with scratch_database(infra.database_url) as url:
        engine = db.create_engine(url, pool_size=1)
        try:
            await db.migrate(engine, schema=service.schema, migrations=service.migrations)
            async with engine.connect() as conn:
                tables = (await conn.execute(TENANT_TABLES, {"schema": service.schema})).mappings().all()
                attributes = (
                    await conn.execute(
                        text("SELECT rolcanlogin, rolbypassrls, rolsuper FROM pg_roles WHERE rolname = :role"),
                        {"role": role},
                    )
                ).one()
        finally:
            await engine.dispose()
    checked = [table for table in tables if table["name"] not in EXEMPT.get(name, set())]
    assert checked, f"{name} has no tables with a tenant_id"
    unsecured = [table["name"] for table in checked if not table["secured"] or role not in table["policy_roles"]]
    assert unsecured == [], f"{name}: tenant tables without row-level security for {role}"
    assert not any(table["owner"] == role for table in checked), "the tenant role must not own its tables"
    assert tuple(attributes) == (False, False, False), f"{role} must not log in, bypass RLS or be a superuser"
