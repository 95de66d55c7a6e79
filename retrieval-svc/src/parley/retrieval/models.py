"""The retrieval schema: the chunk index, what version of each document it holds, and the embedding cache."""

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    Boolean,
    Column,
    Computed,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import TSVECTOR

from parley.kit.outbox import outbox_table
from parley.retrieval.embeddings import DIMENSIONS

metadata = MetaData(schema="retrieval")

TSV_EXPRESSION = "to_tsvector('english', heading || ' ' || text)"

chunks = Table(
    "chunks",
    metadata,
    Column("chunk_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("collection_id", Text, nullable=False),
    Column("document_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("document_title", Text, nullable=False, server_default=""),
    Column("ordinal", Integer, nullable=False),
    Column("heading", Text, nullable=False, server_default=""),
    Column("text", Text, nullable=False),
    Column("token_count", Integer, nullable=False),
    Column("content_hash", Text, nullable=False, server_default=""),
    Column("tsv", TSVECTOR, Computed(TSV_EXPRESSION, persisted=True), nullable=False),
    # NULL for a chunk with no words: a zero vector has no direction, and its cosine distance is NaN.
    Column("embedding", Vector(DIMENSIONS), nullable=True),
    Index("ix_chunks_tsv", "tsv", postgresql_using="gin"),
    Index(
        "ix_chunks_embedding",
        "embedding",
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    ),
    Index("ix_chunks_tenant_document_ordinal", "tenant_id", "document_id", "ordinal"),
    Index("ix_chunks_tenant_collection", "tenant_id", "collection_id"),
)

# One row per document ever indexed or deleted: the version the index holds, and a tombstone
# after deletion, so a late or redelivered upsert cannot bring back an older or deleted document.
indexed_documents = Table(
    "indexed_documents",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("document_id", Text, nullable=False),
    Column("collection_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("deleted", Boolean, nullable=False, server_default="false"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "document_id"),
    Index("ix_indexed_documents_tenant_collection", "tenant_id", "collection_id"),
)

# Collections whose deletion has been seen: an upsert for a document in one is ignored.
deleted_collections = Table(
    "deleted_collections",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("collection_id", Text, nullable=False),
    Column("deleted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "collection_id"),
)

# Keyed on the embedder's name and the hash of the exact text embedded: not tenant data, and
# shared on purpose, so re-indexing unchanged text embeds nothing.
embedding_cache = Table(
    "embedding_cache",
    metadata,
    Column("model", Text, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("embedding", Vector(DIMENSIONS), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("model", "content_hash"),
)

outbox = outbox_table(metadata)
