"""Artifacts' content: scene cards, outlines, character sheets and plot threads, as data.

`ArtifactWriter` is the seam between what an artifact says (written here, by a model through chat-svc's
`Complete`, or extracted offline) and when it is made, kept and marked stale (artifacts.py).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from parley.ingestion.store import SectionRecord

ArtifactKind = Literal["scene_card", "outline", "character_sheet", "plot_thread"]


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose document it is: the tenant billed for a model's work, and the user it is done for."""

    tenant_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class ArtifactDraft:
    kind: ArtifactKind
    # scene_card: the scene number as written (screenplays) or str(section ordinal); outline: "outline";
    # character_sheet: the normalised character name; plot_thread: a slug of the thread's name.
    key: str
    content: Mapping[str, object]  # JSON-serialisable: the artifact as served
    tokens: int  # the model's output tokens, or count_tokens of the JSON when extracted
    model: str  # "provider/model" that wrote it, or "local/extractive"
    source_sha256: str  # a scene card's: the content_sha256 of its section; "" for the rest


class ArtifactWriter(Protocol):
    async def scene_cards(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        """One card for each section given (the caller passes only those that need one)."""
        ...

    async def outline(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> ArtifactDraft: ...

    async def character_sheets(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord], characters: Sequence[str]
    ) -> list[ArtifactDraft]: ...

    async def plot_threads(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]
    ) -> list[ArtifactDraft]: ...
