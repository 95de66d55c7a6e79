"""Identifiers: uuid4 for what a user creates, uuid5 for chunks so a re-run yields the same ids."""

import uuid

from parley.kit.errors import NotFound


def parse_id(value: str, *, kind: str) -> uuid.UUID:
    """An id from a caller. One that is not a uuid names nothing we hold, so it is NotFound."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise NotFound(f"{kind} {value!r} not found") from None


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def chunk_id(document_id: uuid.UUID | str, version: int, ordinal: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{document_id}:{version}:{ordinal}")
