"""Gateway tables: tenants, their users and API keys."""

from sqlalchemy import Column, DateTime, ForeignKey, MetaData, Table, Text, func
from sqlalchemy.dialects.postgresql import UUID

metadata = MetaData(schema="gateway")

tenants = Table(
    "tenants",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

users = Table(
    "users",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("tenant_id", UUID(as_uuid=False), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),  # admin | member
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("tenant_id", UUID(as_uuid=False), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", UUID(as_uuid=False), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
)
