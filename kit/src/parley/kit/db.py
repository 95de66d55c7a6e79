"""The async SQLAlchemy engine (psycopg 3) and each service's Alembic migrations."""

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

Sessions = async_sessionmaker[AsyncSession]


def async_url(database_url: str) -> str:
    """Accept the plain `postgresql://` form operators paste, and use the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    raise ValueError("PARLEY_DATABASE_URL must be a postgresql:// URL")


def create_engine(database_url: str, *, pool_size: int = 5, statement_timeout_ms: int = 15_000) -> AsyncEngine:
    return create_async_engine(
        async_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
        # A deadline on every statement: a stuck query must not hold a request forever.
        connect_args={"options": f"-c statement_timeout={statement_timeout_ms}", "connect_timeout": 10},
    )


def session_factory(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


async def enter_tenant(session: AsyncSession, *, role: str, tenant_id: str) -> None:
    """Give the rest of this transaction to one tenant: it runs as the service's tenant `role` (no
    BYPASSRLS, not the tables' owner) with `parley.tenant_id` set, so PostgreSQL's row-level
    security hides every other tenant's rows whatever a query's WHERE says. One statement, local
    to the transaction. Each service's store wraps it with its own role."""
    await session.execute(
        text("SELECT set_config('role', :role, true), set_config('parley.tenant_id', :tenant_id, true)"),
        {"role": role, "tenant_id": tenant_id},
    )


async def migrate(engine: AsyncEngine, *, schema: str, migrations: Path) -> None:
    """Bring the service's schema to head. Replicas starting together take turns on a lock."""
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"migrate:{schema}"})
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.run_sync(_upgrade, schema, migrations)


def _upgrade(connection: Connection, schema: str, migrations: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    command.upgrade(config, "head")


def run_migrations_in_env(target_metadata: MetaData) -> None:
    """The body of every service's `migrations/env.py`: online, on the connection `migrate` passes."""
    connection: Connection = context.config.attributes["connection"]
    schema: str = context.config.attributes["schema"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
        include_schemas=True,
    )
    with context.begin_transaction():
        context.run_migrations()
