"""Identifiers: uuid4 for what a user creates, uuid5 for sections and chunks so a re-run yields the same ids."""

import uuid


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def chunk_id(document_id: uuid.UUID | str, key: str) -> uuid.UUID:
    """By the chunk's key (section hash, occurrence, piece), not its version or place: a chunk of
    a section a new version leaves alone keeps its id, and retrieval finds its embedding cached."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{document_id}:chunk:{key}")


def section_id(document_id: uuid.UUID | str, version: int, ordinal: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{document_id}:{version}:section:{ordinal}")
