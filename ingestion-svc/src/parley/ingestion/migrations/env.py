from parley.ingestion.models import metadata
from parley.kit.db import run_migrations_in_env

run_migrations_in_env(metadata)
