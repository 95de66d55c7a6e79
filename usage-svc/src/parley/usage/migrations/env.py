from parley.kit.db import run_migrations_in_env
from parley.usage.models import metadata

run_migrations_in_env(metadata)
