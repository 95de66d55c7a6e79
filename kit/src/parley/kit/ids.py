"""Ids cross services as strings; every one Parley makes is a uuid."""

import uuid

from parley.kit.errors import NotFound


def as_uuid(value: str) -> uuid.UUID | None:
    """The uuid `value` spells, or None: such a value names nothing Parley holds."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None


def parse_id(value: str, *, kind: str) -> uuid.UUID:
    """An id from a caller. One that is not a uuid names nothing we hold, so it is NotFound."""
    parsed = as_uuid(value)
    if parsed is None:
        raise NotFound(f"{kind} {value!r} not found")
    return parsed
