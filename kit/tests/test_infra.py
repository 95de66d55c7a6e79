"""The embedded stack the tests and `make run` share: real PostgreSQL with pgvector, real JetStream."""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.kit import bus


async def test_postgres_has_pgvector(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        distance = (await conn.execute(text("SELECT '[1,0]'::vector <-> '[0,1]'::vector"))).scalar_one()
    assert round(distance, 4) == 1.4142


async def test_streams_of_the_design_exist(nats_client) -> None:
    js = nats_client.jetstream()
    names = {info.config.name for info in await js.streams_info()}
    assert {config.name for config in bus.STREAMS} <= names
