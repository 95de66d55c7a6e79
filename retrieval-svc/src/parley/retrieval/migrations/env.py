from parley.kit.db import run_migrations_in_env
from parley.retrieval.models import metadata

run_migrations_in_env(metadata)
