"""The env.py of `python -m parley.kit.migrations … revision`: the service's metadata arrives in the
config instead of by import, so one template directory serves every service."""

from alembic import context

from parley.kit.db import run_migrations_in_env

run_migrations_in_env(context.config.attributes["target_metadata"])
