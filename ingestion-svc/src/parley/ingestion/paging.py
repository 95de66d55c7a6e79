"""Cursor pagination: an opaque token that remembers the last row of the previous page."""

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from parley.kit.errors import InvalidInput

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Cursor:
    """Rows are listed newest first; the next page starts after (created_at, id)."""

    created_at: datetime
    id: uuid.UUID


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidInput("page_size must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(cursor: Cursor) -> str:
    raw = json.dumps({"t": cursor.created_at.isoformat(), "i": str(cursor.id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str) -> Cursor | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        fields = json.loads(raw)
        created_at = datetime.fromisoformat(fields["t"])
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        return Cursor(created_at=created_at, id=uuid.UUID(fields["i"]))
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidInput("page_token is not one this service issued") from None
