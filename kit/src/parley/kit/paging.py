"""Cursor pagination for every List call: an opaque token that remembers the last row of the
previous page, so pages stay stable while rows are added.
"""

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from parley.kit.errors import InvalidInput

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# What every page token is: URL-safe base64 without padding (of a small JSON object).
PAGE_TOKEN_PATTERN = r"^[A-Za-z0-9_-]*$"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Rows are listed newest first; the next page starts after (at, id)."""

    at: datetime
    id: uuid.UUID


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidInput("page_size must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(cursor: Cursor) -> str:
    raw = json.dumps({"t": cursor.at.isoformat(), "i": str(cursor.id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str) -> Cursor | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        fields = json.loads(raw)
        at = datetime.fromisoformat(fields["t"])
        if at.tzinfo is None:
            raise ValueError("naive timestamp")
        return Cursor(at=at, id=uuid.UUID(fields["i"]))
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidInput("page_token is not one this service issued") from None
