"""What a writer hands back (`ArtifactDraft`), what a writer is (`ArtifactWriter`), the artifacts'
sizes, and who the main characters are: what every other module of the package shares.

Sizes follow the WritersRoom notes: a card ~150 tokens, an outline under 500, a sheet under 300,
3-5 pivotal scenes.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from parley.ingestion.clients import Owner
from parley.ingestion.screenplay_reports import characters_report
from parley.ingestion.store import ArtifactRecord, SectionRecord

ArtifactKind = Literal["scene_card", "outline", "character_sheet", "plot_thread", "coverage"]
ThreadType = Literal["character_arc", "plot", "subplot", "theme"]

EXTRACTIVE_MODEL = "local/extractive"
CARD_TOKENS = 150
OUTLINE_TOKENS = 500
SHEET_TOKENS = 300
MAIN_CHARACTERS = 5
PIVOTAL_SCENES = 3
RELATIONSHIPS = 5
SUBPLOTS = 2
LINE_TOKENS = 40  # a quoted line of dialogue, at most
DIGEST_TOKENS = 12_000
CHARACTER_DIGEST_TOKENS = 6_000
SECTION_PROMPT_TOKENS = 3_000  # one section's text in a card prompt, at most
CARD_BATCH_SCENES = 8
CARD_BATCH_TOKENS = 6_000
CONCURRENT_COMPLETIONS = 4
COVERAGE_TOKENS = 900
COVERAGE_DIGEST_TOKENS = 8_000
# What a model's coverage scores, each once, with the scenes that justify the score.
COVERAGE_CRITERIA = ("premise", "structure", "characters", "dialogue", "pacing")
JUSTIFYING_SCENES = 5  # at most, a score


@dataclass(frozen=True, slots=True)
class ArtifactDraft:
    kind: ArtifactKind
    # scene_card: the scene number as written (screenplays) or str(section ordinal); outline: "outline";
    # character_sheet: the normalised character name; plot_thread: a slug of the thread's name;
    # coverage: "coverage".
    key: str
    content: Mapping[str, object]  # JSON-serialisable: the artifact as served
    tokens: int  # the model's output tokens, or count_tokens of the JSON when extracted
    model: str  # "provider/model" that wrote it, or "local/extractive"
    source_sha256: str  # a scene card's: the content_sha256 of its section; "" for the rest


class ArtifactWriter(Protocol):
    async def scene_cards(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        """One card for each section given that gets one (`carded`: in a screenplay, its scenes);
        the caller passes only those that need one."""
        ...

    async def outline(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> ArtifactDraft: ...

    async def character_sheets(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord], characters: Sequence[str]
    ) -> list[ArtifactDraft]: ...

    async def plot_threads(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]
    ) -> list[ArtifactDraft]: ...

    async def coverage(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord], artifacts: Sequence[ArtifactRecord]
    ) -> ArtifactDraft:
        """The coverage report; `artifacts` are the script's others already kept (its outline, cards,
        sheets and threads), for a writer that reads them rather than the whole text."""
        ...


def main_characters(sections: Sequence[SectionRecord], *, limit: int = MAIN_CHARACTERS) -> list[str]:
    """Who gets a sheet and an arc: the characters who speak in the most scenes (then say the most
    words), at most `limit` of them, and only those who speak in two scenes or more (an arc needs two)."""
    return [row.name for row in characters_report(sections) if row.scenes >= 2][:limit]
