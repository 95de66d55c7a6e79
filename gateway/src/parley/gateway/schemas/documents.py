"""Documents: their state and progress, new versions, sections, a screenplay's reports and
artifacts (routes/documents.py; uploads in routes/collections.py)."""

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, StringConstraints, field_validator

from parley.gateway.schemas import FromProto, NamesOrNone, NoneIfEmpty, PageOrNone
from parley.kit.contracts import ARTIFACT_KINDS, INGEST_PRIORITIES

# An ingest job's queue: what an upload or a new version may ask for.
PRIORITY = f"^({'|'.join(INGEST_PRIORITIES)})$"
# The artifacts a document can have (`?kind=`): ingestion knows no others.
ArtifactKind = Annotated[str, StringConstraints(pattern=f"^({'|'.join(ARTIFACT_KINDS)})$")]

# DOCUMENT_STATUS_READY is `ready`.
DocumentStatusName = Annotated[str, BeforeValidator(lambda name: str(name).removeprefix("DOCUMENT_STATUS_").lower())]


class Document(FromProto):
    id: str
    collection_id: str
    title: str
    content_type: str
    status: DocumentStatusName
    version: int
    size_bytes: int
    chunk_count: int
    token_count: int
    content_sha256: str
    error: NoneIfEmpty
    failed_stage: NoneIfEmpty
    done: int
    total: int
    message: str
    # A screenplay's growth (empty, partial, analyzed: which artifacts it gets); null for other documents.
    analysis_state: NoneIfEmpty
    created_at: datetime | None
    updated_at: datetime | None


class DocumentProgress(FromProto):
    """One `progress` event of a document's SSE stream."""

    status: DocumentStatusName
    version: int
    chunk_count: int
    error: str
    failed_stage: str
    done: int
    total: int
    message: str


class SectionChangesOut(BaseModel):
    added: int
    changed: int
    removed: int
    unchanged: int


class DocumentUpdateOut(FromProto):
    """A new version's outcome: `new_version` (queued, same id) or `unchanged` (the same bytes)."""

    document: Document
    outcome: Literal["new_version", "unchanged"]
    sections: SectionChangesOut


# --- A document's sections and a screenplay's reports -------------------------------------------


class SceneOut(BaseModel):
    number: str
    int_ext: str
    location: str
    time_of_day: str
    characters: list[str]


class SectionOut(FromProto):
    """One section of a document's current version; `scene` only for a screenplay's scenes."""

    id: str
    ordinal: int
    kind: str
    heading: str
    heading_path: list[str]
    page: int | None = None
    tokens: int
    scene: SceneOut | None = None


class CharacterOut(BaseModel):
    name: str
    scenes: int
    dialogue_blocks: int
    words: int
    first_scene: str
    last_scene: str
    longest_absence: int
    most_shared_with: NoneIfEmpty = None
    shared_scenes: int


class CharactersOut(FromProto):
    """Who speaks in a screenplay, most scenes first, counted from its scenes."""

    document_id: str
    characters: list[CharacterOut]


class ScenePacingOut(BaseModel):
    number: str
    heading: str
    lines: int
    eighths: int
    dialogue_share: float


class ActPacingOut(BaseModel):
    act: str
    scenes: int
    pages: float


class PacingOut(FromProto):
    document_id: str
    pages: int
    scenes: int
    dialogue_share: float
    day_night: dict[str, int]
    int_ext: dict[str, int]
    per_scene: list[ScenePacingOut]
    per_act: list[ActPacingOut]


# --- A document's artifacts ------------------------------------------------------------------------


class ArtifactOut(FromProto):
    """A scene card, the outline, a character sheet or a plot thread; `content` is the artifact's
    own JSON, `stale` says the document changed enough since `document_version` to rewrite it."""

    id: str
    kind: str
    key: str
    content: dict[str, Any] = Field(validation_alias="content_json")
    stale: bool
    tokens: int
    model: str
    document_version: int
    updated_at: datetime

    @field_validator("content", mode="before")
    @classmethod
    def _parsed(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value


class ArtifactsOut(FromProto):
    document_id: str
    artifacts: list[ArtifactOut]


class Passage(FromProto):
    """A search hit's fields (without score and snippet), and the passage's whole `text`."""

    chunk_id: str
    document_id: str
    collection_id: str
    document_title: str
    heading: str
    ordinal: int
    text: str
    token_count: int
    # A screenplay's passages only; null elsewhere.
    scene_number: NoneIfEmpty = None
    characters: NamesOrNone = None
    page_start: PageOrNone = None
    page_end: PageOrNone = None
