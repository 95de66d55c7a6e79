"""Collections (routes/collections.py)."""

from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, StringConstraints

from parley.gateway.schemas import NO_NUL, Body, FromProto, Name
from parley.kit.contracts import MAX_DESCRIPTION_CHARS


class CollectionIn(Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Manuals", "description": "the kitchen's machines"}]}
    )

    name: Name
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION_CHARS, pattern=NO_NUL)] = ""


class Collection(FromProto):
    id: str
    name: str
    description: str
    document_count: int
    created_at: datetime | None
