"""Ingestion's tables, in the `ingestion` schema. The migration in migrations/versions creates them."""

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from parley.kit.contracts import ARTIFACT_KINDS
from parley.kit.outbox import outbox_table

metadata = MetaData(schema="ingestion")


class Status(StrEnum):
    """Where a document's current version is on its way to being searchable."""

    QUEUED = "QUEUED"
    PARSING = "PARSING"
    CHUNKING = "CHUNKING"
    INDEXING = "INDEXING"
    READY = "READY"
    FAILED = "FAILED"
    ANALYZING = "ANALYZING"  # searchable; its artifacts are being written


class AnalysisState(StrEnum):
    """A screenplay's growth, which decides the artifacts it gets; NONE for every other document."""

    NONE = ""
    EMPTY = "empty"  # too short for artifacts yet
    PARTIAL = "partial"  # scene cards
    ANALYZED = "analyzed"  # scene cards, outline, character sheets, plot threads


collections = Table(
    "collections",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("tenant_id", "name", name="collections_tenant_name_key"),
    Index("collections_tenant_created_idx", "tenant_id", "created_at", "id"),
)

documents = Table(
    "documents",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("collection_id", Uuid, ForeignKey("ingestion.collections.id", ondelete="CASCADE"), nullable=False),
    Column("title", Text, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("filename", Text, nullable=False, server_default=""),
    Column("version", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("chunk_count", Integer, nullable=False, server_default="0"),
    Column("token_count", BigInteger, nullable=False, server_default="0"),
    Column("size_bytes", BigInteger, nullable=False),
    Column("content_sha256", Text, nullable=False),
    Column("error", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The current stage's detail: how far (done of total sections or chunks) and what, in words;
    # when FAILED, the stage it failed in.
    Column("failed_stage", Text, nullable=False, server_default=""),
    Column("done", Integer, nullable=False, server_default="0"),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("message", Text, nullable=False, server_default=""),
    Column("analysis_state", Text, nullable=False, server_default=""),
    # The version whose sections the artifacts' staleness has been counted up to (0: none yet).
    Column("analysis_version", Integer, nullable=False, server_default="0"),
    CheckConstraint(f"status IN ({', '.join(repr(s.value) for s in Status)})", name="documents_status_check"),
    # The same content under the same title in the same collection is one document, even when
    # two uploads race.
    CheckConstraint(
        f"analysis_state IN ({', '.join(repr(s.value) for s in AnalysisState)})", name="documents_analysis_state_check"
    ),
    UniqueConstraint("tenant_id", "collection_id", "title", "content_sha256", name="documents_dedup_key"),
    Index("documents_tenant_collection_created_idx", "tenant_id", "collection_id", "created_at", "id"),
)

document_versions = Table(
    "document_versions",
    metadata,
    Column("document_id", Uuid, ForeignKey("ingestion.documents.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("content", LargeBinary, nullable=False),  # the bytes as uploaded
    Column("content_sha256", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

chunks = Table(
    "chunks",
    metadata,
    Column("chunk_id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("document_id", Uuid, nullable=False),
    Column("version", Integer, nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("heading", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("token_count", Integer, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("section_ordinal", Integer, nullable=False, server_default="0"),
    ForeignKeyConstraint(
        ["document_id", "version"],
        ["ingestion.document_versions.document_id", "ingestion.document_versions.version"],
        ondelete="CASCADE",
        name="chunks_version_fkey",
    ),
    UniqueConstraint("document_id", "version", "ordinal", name="chunks_document_version_ordinal_key"),
)

# A version's sections in order, written with its chunks; a screenplay's scenes carry their
# counts (characters, dialogue, lines) in `scene`, from which its reports are computed.
sections = Table(
    "sections",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("document_id", Uuid, nullable=False),
    Column("version", Integer, nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("heading", Text, nullable=False),
    Column("heading_path", ARRAY(Text), nullable=False),
    Column("page", Integer, nullable=True),
    Column("tokens", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("content_sha256", Text, nullable=False),
    Column("scene", JSONB(none_as_null=True), nullable=True),
    ForeignKeyConstraint(
        ["document_id", "version"],
        ["ingestion.document_versions.document_id", "ingestion.document_versions.version"],
        ondelete="CASCADE",
        name="sections_version_fkey",
    ),
    UniqueConstraint("document_id", "version", "ordinal", name="sections_document_version_ordinal_key"),
)

# What a document's artifacts say, one row per (document, kind, key), replaced in place when
# rewritten. `changed_scenes` counts the scenes changed since it was written (sheets, outline,
# plot threads go stale past a threshold); a card is stale once its scene's text changed.
artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("document_id", Uuid, ForeignKey("ingestion.documents.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("content", JSONB, nullable=False),
    Column("tokens", Integer, nullable=False),
    Column("model", Text, nullable=False),
    Column("document_version", Integer, nullable=False),
    Column("source_sha256", Text, nullable=False, server_default=""),
    Column("changed_scenes", Integer, nullable=False, server_default="0"),
    Column("stale", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("document_id", "kind", "key", name="artifacts_document_kind_key_key"),
    CheckConstraint(f"kind IN ({', '.join(repr(kind) for kind in ARTIFACT_KINDS)})", name="artifacts_kind_check"),
)

outbox = outbox_table(metadata)
