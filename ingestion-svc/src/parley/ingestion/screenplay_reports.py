"""Reports on a screenplay, counted from its scene sections — never guessed by a model.

"Present in a scene" means speaking in it: a script names who speaks, while who is merely
there is prose. Absences are counted between a character's first and last scene. Dialogue
share is dialogue lines over dialogue and action lines. Length in eighths of a page is the
scene's printed lines over 55, in eighths, at least one (how a stripboard counts it).
"""

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

from parley.ingestion.screenplay import LINES_PER_PAGE
from parley.ingestion.sections import Scene
from parley.kit.contracts import SCREENPLAY_TYPES

_DAY_WORDS = frozenset({"DAY", "MORNING", "AFTERNOON", "NOON", "DAWN", "SUNRISE", "DAYTIME"})
_NIGHT_WORDS = frozenset({"NIGHT", "EVENING", "DUSK", "SUNSET", "MIDNIGHT", "NIGHTTIME"})


@dataclass(frozen=True, slots=True)
class CharacterReport:
    name: str
    scenes: int
    dialogue_blocks: int
    words: int
    first_scene: str  # scene numbers as the script numbers them
    last_scene: str
    longest_absence: int  # most scenes in a row without them, between their first and last
    most_shared_with: str  # who shares the most scenes with them ("" when nobody does)
    shared_scenes: int


@dataclass(frozen=True, slots=True)
class ScenePacing:
    number: str
    heading: str
    lines: int
    eighths: int
    dialogue_share: float


@dataclass(frozen=True, slots=True)
class ActPacing:
    act: str  # the top-level Fountain section, "" for scenes outside any
    scenes: int
    pages: float  # eighths / 8


@dataclass(frozen=True, slots=True)
class PacingReport:
    pages: int
    scenes: int
    dialogue_share: float
    day_night: dict[str, int]  # "day", "night", "other"
    int_ext: dict[str, int]  # "INT", "EXT", "INT/EXT", "" (forced headings)
    per_scene: list[ScenePacing]
    per_act: list[ActPacing]


class HasScene(Protocol):
    """A section as parsed or as stored: the reports need only its scene."""

    @property
    def scene(self) -> Scene | None: ...


class HasSceneAndOrdinal(HasScene, Protocol):
    @property
    def ordinal(self) -> int: ...


def card_key(section: HasSceneAndOrdinal) -> str:
    """What a section's card is filed under: a scene's key (its printed number, told apart when two
    scenes share one), another document's section by its place."""
    if section.scene is None:
        return str(section.ordinal)
    return section.scene.key or section.scene.number


def is_screenplay(content_type: str, sections: Sequence[HasScene]) -> bool:
    """A Fountain or FDX file, or another (a PDF of a script) that was read as one: it has scenes."""
    return content_type in SCREENPLAY_TYPES or any(section.scene is not None for section in sections)


def scenes_of(sections: Sequence[HasScene]) -> list[Scene]:
    return [section.scene for section in sections if section.scene is not None]


def characters_report(sections: Sequence[HasScene]) -> list[CharacterReport]:
    """One row per speaking character, most scenes first (then most words, then name)."""
    scenes = scenes_of(sections)
    appearances: dict[str, list[int]] = {}
    blocks: Counter[str] = Counter()
    words: Counter[str] = Counter()
    together: dict[str, Counter[str]] = {}
    for index, scene in enumerate(scenes):
        for name in scene.characters:
            appearances.setdefault(name, []).append(index)
            together.setdefault(name, Counter()).update(other for other in scene.characters if other != name)
        for block in scene.dialogue_blocks:
            blocks[block.character] += 1
            words[block.character] += block.words
    rows: list[CharacterReport] = []
    for name, seen in appearances.items():
        partners = sorted(together[name].items(), key=lambda item: (-item[1], item[0]))
        rows.append(
            CharacterReport(
                name=name,
                scenes=len(seen),
                dialogue_blocks=blocks[name],
                words=words[name],
                first_scene=scenes[seen[0]].number,
                last_scene=scenes[seen[-1]].number,
                longest_absence=max((later - earlier - 1 for earlier, later in pairwise(seen)), default=0),
                most_shared_with=partners[0][0] if partners else "",
                shared_scenes=partners[0][1] if partners else 0,
            )
        )
    return sorted(rows, key=lambda row: (-row.scenes, -row.words, row.name))


def eighths(scene: Scene) -> int:
    return max(1, round(scene.lines * 8 / LINES_PER_PAGE))


def dialogue_share(dialogue_lines: int, action_lines: int) -> float:
    total = dialogue_lines + action_lines
    return round(dialogue_lines / total, 3) if total else 0.0


def day_or_night(time_of_day: str) -> str:
    words = set(time_of_day.upper().replace("-", " ").split())
    if words & _NIGHT_WORDS:
        return "night"
    if words & _DAY_WORDS:
        return "day"
    return "other"


def pacing_report(sections: Sequence[HasScene]) -> PacingReport:
    scenes = scenes_of(sections)
    per_act: dict[str, list[Scene]] = {}
    for scene in scenes:
        per_act.setdefault(scene.act_path[0] if scene.act_path else "", []).append(scene)
    day_night = Counter(day_or_night(scene.time_of_day) for scene in scenes)
    last = scenes[-1] if scenes else None
    return PacingReport(
        pages=last.start_page + math.ceil(last.lines / LINES_PER_PAGE) - 1 if last else 0,
        scenes=len(scenes),
        dialogue_share=dialogue_share(
            sum(scene.dialogue_lines for scene in scenes), sum(scene.action_lines for scene in scenes)
        ),
        day_night={bucket: day_night[bucket] for bucket in ("day", "night", "other")},
        int_ext=dict(Counter(scene.int_ext for scene in scenes)),
        per_scene=[
            ScenePacing(
                number=scene.number,
                heading=scene.heading,
                lines=scene.lines,
                eighths=eighths(scene),
                dialogue_share=dialogue_share(scene.dialogue_lines, scene.action_lines),
            )
            for scene in scenes
        ],
        per_act=[
            ActPacing(act=act, scenes=len(members), pages=sum(eighths(scene) for scene in members) / 8)
            for act, members in per_act.items()
        ],
    )
