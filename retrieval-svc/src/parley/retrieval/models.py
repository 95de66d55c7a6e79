"""The retrieval schema: the chunk index, its vectors per model, its BM25 term statistics, what
version of each document it holds, and the embedding cache."""

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    REAL,
    BigInteger,
    Boolean,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR

from parley.kit.outbox import outbox_table

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
    # Where the chunk sits in a screenplay ('' / {} / 0 when its format has none): search filters.
    Column("scene_number", Text, nullable=False, server_default=""),
    Column("characters", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("page_start", Integer, nullable=False, server_default="0"),
    Column("page_end", Integer, nullable=False, server_default="0"),
    Index("ix_chunks_tsv", "tsv", postgresql_using="gin"),
    # "Every one of these characters" is array containment (@>), which GIN answers.
    Index("ix_chunks_characters", "characters", postgresql_using="gin"),
    Index("ix_chunks_tenant_document_ordinal", "tenant_id", "document_id", "ordinal"),
    Index("ix_chunks_tenant_collection", "tenant_id", "collection_id"),
)

# A chunk's vector from each model that has embedded it (the embedder's `name`): the configured
# model's, and during a switch of model also the previous one's, which search keeps using until
# every chunk of the searched collections has the new one (vectors.py). No width: each model has
# its own, and its HNSW index is a partial expression index `(embedding::vector(D)) WHERE model =
# '<name>'` that the service creates at start (store.ensure_vector_index), since model names and
# widths are configuration, not schema.
chunk_embeddings = Table(
    "chunk_embeddings",
    metadata,
    Column("chunk_id", Text, ForeignKey(chunks.c.chunk_id, ondelete="CASCADE"), nullable=False),
    Column("model", Text, nullable=False),
    Column("tenant_id", Text, nullable=False),
    # NULL for a chunk with no words: a zero vector has no direction, and its cosine distance is NaN.
    Column("embedding", Vector(), nullable=True),
    PrimaryKeyConstraint("chunk_id", "model"),
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
    # No width: each model's vectors are its own, and a model of another width can share the table.
    Column("embedding", Vector(), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("model", "content_hash"),
)

# BM25's statistics (see bm25.py): per (tenant, collection) the chunk count and total length, per
# term its document frequency, per (term, chunk) a posting. Written in the transaction that writes
# the chunks, so the keyword leg never sees half of a version.
bm25_collections = Table(
    "bm25_collections",
    metadata,
    Column("collection_key", BigInteger, Identity(always=True), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("collection_id", Text, nullable=False),
    Column("chunk_count", BigInteger, nullable=False, server_default="0"),
    Column("total_length", BigInteger, nullable=False, server_default="0"),
    # Bumped by every write of the collection's postings (keyword_index.py follows it).
    Column("generation", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("tenant_id", "collection_id", name="uq_bm25_collections_tenant_collection"),
)


def _of_bm25_collection() -> Column[int]:
    """The column that ties a BM25 row to its collection's, and goes with it."""
    return Column(
        "collection_key", BigInteger, ForeignKey(bm25_collections.c.collection_key, ondelete="CASCADE"), nullable=False
    )


# Per document, the collection generation that last changed its postings (a deleted document keeps
# its row): what a replica's in-memory postings must re-read after that generation.
bm25_document_changes = Table(
    "bm25_document_changes",
    metadata,
    _of_bm25_collection(),
    Column("document_id", Text, nullable=False),
    Column("generation", BigInteger, nullable=False),
    PrimaryKeyConstraint("collection_key", "document_id"),
    Index("ix_bm25_document_changes_generation", "collection_key", "generation"),
)

bm25_terms = Table(
    "bm25_terms",
    metadata,
    _of_bm25_collection(),
    Column("term", Text, nullable=False),
    Column("df", BigInteger, nullable=False),
    PrimaryKeyConstraint("collection_key", "term"),
)

# No primary key: postings are derived from the chunks and replaced a document at a time; the
# index that matters is the impact-ordered one a search reads (index-only, best postings first).
bm25_postings = Table(
    "bm25_postings",
    metadata,
    _of_bm25_collection(),
    Column("term", Text, nullable=False),
    Column("chunk_id", Text, nullable=False),
    Column("document_id", Text, nullable=False),
    Column("tf", Integer, nullable=False),
    Column("chunk_length", Integer, nullable=False),
    Column("impact", REAL, nullable=False),
    Index(
        "ix_bm25_postings_term_impact",
        "collection_key",
        "term",
        text("impact DESC"),
        postgresql_include=["chunk_id", "document_id", "tf", "chunk_length"],
    ),
    # The exact rescoring of a search's candidates: one descent per (term, candidate chunk).
    Index(
        "ix_bm25_postings_term_chunk",
        "collection_key",
        "term",
        "chunk_id",
        postgresql_include=["tf", "chunk_length"],
    ),
    Index("ix_bm25_postings_document", "collection_key", "document_id"),
)

# The parts of a chunk set too large for one message (ChunksUpserted.part of .parts), held until
# every part of the version has come; then the version is indexed whole and its parts dropped.
upsert_parts = Table(
    "upsert_parts",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("document_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("part", Integer, nullable=False),
    Column("parts", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "document_id", "version", "part"),
)

outbox = outbox_table(metadata)
