"""Gateway tables: tenants, their users and API keys, and the rate limiter's counters."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID

metadata = MetaData(schema="gateway")

tenants = Table(
    "tenants",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Per-tenant rate limits; null is the installation's default (settings).
    Column("requests_per_minute", Integer),
    Column("chat_requests_per_minute", Integer),
    Column("llm_tokens_per_minute", Integer),
    # A soft alert on the tenant's month (its hard limit is usage-svc's budget), in micro-USD.
    Column("alert_at_micros", BigInteger),
)

users = Table(
    "users",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("tenant_id", UUID(as_uuid=False), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),  # owner | admin | member | viewer (CHECK in migration 0002)
    Column("email", Text),
    # The identity provider's `sub` for a user who signs in with SSO (created on first sight).
    Column("sso_subject", Text),
    # May create and list tenants: the person who installed Parley (the bootstrap key's user).
    Column("installation_owner", Boolean, nullable=False, server_default=text("false")),
    # The user's own monthly budget (hard: 402 before spending) and soft alert, in micro-USD.
    Column("monthly_limit_micros", BigInteger),
    Column("alert_at_micros", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("tenant_id", "email", name="users_tenant_email"),
    UniqueConstraint("tenant_id", "sso_subject", name="users_tenant_sso_subject"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("tenant_id", UUID(as_uuid=False), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", UUID(as_uuid=False), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    # The key's first characters, kept in clear so a person can tell their keys apart.
    Column("prefix", Text, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    # The key's own monthly budget (hard: 402 before spending) and soft alert, in micro-USD.
    Column("monthly_limit_micros", BigInteger),
    Column("alert_at_micros", BigInteger),
    Index("api_keys_tenant_user", "tenant_id", "user_id"),
)

# Fixed one-minute windows shared by every gateway replica; UNLOGGED (migration 0002): losing
# counts in a crash lets a minute's traffic through again, and no write pays for the WAL.
rate_counters = Table(
    "rate_counters",
    metadata,
    Column("bucket", Text, primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("count", BigInteger, nullable=False),
)
