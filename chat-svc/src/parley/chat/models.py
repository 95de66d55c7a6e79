"""chat-svc tables, in its own schema (migrations/versions says how each came to be)."""

from sqlalchemy import (
    ARRAY,
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
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from parley.kit.outbox import outbox_table

metadata = MetaData(schema="chat")

conversations = Table(
    "conversations",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("collection_ids", ARRAY(Text), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The rolling summary of the first `summarized_messages` messages (memory.Summarizer).
    Column("summary", Text, nullable=False, server_default=""),
    Column("summarized_messages", Integer, nullable=False, server_default="0"),
    Index("conversations_by_owner", "tenant_id", "user_id", "updated_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("conversation_id", UUID(as_uuid=False), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("turn_id", UUID(as_uuid=False), nullable=False),
    Column("role", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("sources", JSONB, nullable=False, server_default="[]"),
    Column("model", Text, nullable=False, server_default=""),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_1h_tokens", BigInteger, nullable=False, server_default="0"),  # of cache_write_tokens
    # An answer the provider broke off after it began: kept and billed, but not whole.
    Column("incomplete", Boolean, nullable=False, server_default=false()),
    # An answer's prompt: intent, parts and their tokens, what was trimmed, cache reads and writes.
    Column("context_used", JSONB, nullable=True),
    # An answer's cost as usage-svc priced it (USD millionths); NULL when it could not say.
    Column("cost_micros", BigInteger, nullable=True),
    # A question as the model read it, with the passages and open section sent with it (empty: its
    # content alone), and those passages ([{chunk_id, index}]): later turns send it again as it was.
    Column("sent_text", Text, nullable=False, server_default=""),
    Column("sent_passages", JSONB, nullable=False, server_default="[]"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("messages_by_conversation", "tenant_id", "conversation_id", "created_at"),
)

turns = Table(
    "turns",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("conversation_id", UUID(as_uuid=False), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("state", Text, nullable=False),  # running | completed | failed | cancelled | interrupted
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # What settling the turn needs when the replica running it died (leases.TurnLeases): who asked,
    # the hold to charge, the call it was making.
    Column("user_id", Text, nullable=False, server_default=""),
    Column("reservation_id", Text, nullable=False, server_default=""),
    Column("provider", Text, nullable=False, server_default=""),
    Column("model", Text, nullable=False, server_default=""),
    # Renewed by the replica running the turn; past it, the replica is presumed dead.
    Column("lease_expires_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # What the provider reported the call cost, written the moment it did (before the answer is
    # priced and stored), so a replica dying then loses none of it: {"provider", "model", "usage"}.
    Column("reported_usage", JSONB, nullable=True),
    Index("turns_by_conversation", "tenant_id", "conversation_id"),
    # Every replica's look for running turns whose lease ran out; partial: it never reads finished ones.
    Index("turns_running", "lease_expires_at", postgresql_where=text("state = 'running'")),
)

outbox = outbox_table(metadata)
