"""The ingestion models and migrations describe the same tables: a schema built by the migrations
alone leaves autogenerate nothing to add, so the next revision holds only what its author meant."""

from parley.kit.migrations import ServiceSchema, drift
from parley.kit.testing import Infra


async def test_the_models_match_the_migrations(infra: Infra) -> None:
    assert await drift(infra.database_url, ServiceSchema.of("ingestion")) == []
