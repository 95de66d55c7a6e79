"""`make migration SERVICE=… MESSAGE=…` writes, for every service, the next revision from what its
models add; the revision it writes brings a fresh schema level with the models.

Each test works on a copy of the service's migrations in a temporary folder, so nothing is left in
the tree."""

import shutil
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import BigInteger, Column, MetaData, Table, Text

from parley.kit.migrations import ServiceSchema, drift, new_revision
from parley.kit.testing import Infra

SERVICES = ["gateway", "ingestion", "retrieval", "chat", "usage"]


def with_a_new_table(metadata: MetaData) -> MetaData:
    """The service's tables plus one a developer just added to models.py."""
    changed = MetaData(schema=metadata.schema)
    for table in metadata.tables.values():
        table.to_metadata(changed)
    Table(
        "pinned_notes",
        changed,
        Column("id", BigInteger, primary_key=True),
        Column("tenant_id", Text, nullable=False),
        Column("note", Text, nullable=False, server_default=""),
    )
    return changed


@pytest.mark.parametrize("name", SERVICES)
async def test_a_revision_is_written_from_a_model_change_and_closes_the_gap(
    infra: Infra, tmp_path: Path, name: str
) -> None:
    real = ServiceSchema.of(name)
    migrations = tmp_path / "migrations"
    shutil.copytree(real.migrations, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    head_before = ScriptDirectory.from_config(_config_for(migrations)).get_current_head()
    service = ServiceSchema(name=name, metadata=with_a_new_table(real.metadata), migrations=migrations)
    assert await drift(infra.database_url, service), "the added table should be a difference"

    written = await new_revision(infra.database_url, service, message="pin notes")

    assert written.parent == migrations / "versions"
    assert written.name.endswith("_pin_notes.py")
    source = written.read_text()
    assert "op.create_table(" in source and "pinned_notes" in source
    assert f"down_revision = {head_before!r}" in source.replace('"', "'")
    # Nothing written into the real tree.
    assert not list(real.versions.glob("*_pin_notes.py"))
    assert await drift(infra.database_url, service) == []


def _config_for(migrations: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    return config
