"""Artifacts' content: scene cards, outlines, character sheets and plot threads, as data.

`ArtifactWriter` is the seam between what an artifact says (written here, by a model through chat-svc's
`Complete`, or extracted offline) and when it is made, kept and marked stale (artifacts.py).

Two writers, picked by `PARLEY_ARTIFACTS_PROVIDER` (`build_writer`):

- `ExtractiveWriter` (`local`, the default): offline and deterministic, built only from the text and
  the counted facts of `screenplay_reports`. What a model would judge (a character's want, a scene's
  plot progression) is either quoted evidence or absent, never made up; its content says
  `"method": "extractive"`. Screenplay heuristics, each named in the content: what happens = a scene's
  first action sentences; its conflict = the line of dialogue with the most refusal, question and
  exclamation cues; acts = the script's own top-level Fountain sections, else thirds of its length;
  turning points = the scenes at 1/4, 1/2 and 3/4 of its length; the central conflict and the plot
  thread = the two characters who speak in the most scenes together; pivotal scenes = where a
  character speaks most; a theme only when a phrase of the title recurs in the scenes.
- `ModelWriter`: asks a `Completer` (chat-svc `Complete`, billed as `summary`) for JSON of a fixed
  shape per kind, validated by the pydantic answers below (cited scene numbers must exist). One
  retry on an unusable answer, then the extractive artifact for that item, saying so (`fallback`).
  Cards go several scenes to a completion (`CARD_BATCH_SCENES`, `CARD_BATCH_TOKENS`): the
  instructions are then paid for once per batch rather than once per scene, and a 120-page script
  takes ~20 calls instead of ~150. Outlines, sheets and threads read a digest of the whole script
  (each scene's number, heading, page, speakers and first action sentences) cut to `DIGEST_TOKENS`,
  so a feature-length script fits one prompt.

Sizes follow the WritersRoom notes: a card ~150 tokens, an outline under 500, a sheet under 300,
3-5 pivotal scenes.
"""

import asyncio
import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Annotated, Literal, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from parley.ingestion.clients import Completer, Completion, Owner
from parley.ingestion.config import Settings
from parley.ingestion.screenplay import normalise_cue
from parley.ingestion.screenplay_reports import card_key, characters_report, dialogue_share, eighths, pacing_report
from parley.ingestion.sections import Scene
from parley.ingestion.store import SectionRecord
from parley.kit.contracts import LOCAL_PROVIDER, MAX_ID_CHARS
from parley.kit.tokens import count_tokens

log = logging.getLogger(__name__)

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


def build_writer(settings: Settings, completer: Completer | None) -> ArtifactWriter:
    if settings.artifacts_provider == LOCAL_PROVIDER:
        return ExtractiveWriter()
    if completer is None:
        raise ValueError(f"artifacts provider {settings.artifacts_provider!r} is asked through chat-svc: no completer")
    return ModelWriter(completer)


def main_characters(sections: Sequence[SectionRecord], *, limit: int = MAIN_CHARACTERS) -> list[str]:
    """Who gets a sheet and an arc: the characters who speak in the most scenes (then say the most
    words), at most `limit` of them, and only those who speak in two scenes or more (an arc needs two)."""
    return [row.name for row in characters_report(sections) if row.scenes >= 2][:limit]


# --- Reading a scene's text back into action and speech ---------------------------------------------------

Content = dict[str, object]
ScenePart = tuple[SectionRecord, Scene]

_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"'”’)])\s+")
_REFUSAL = re.compile(r"\b(?:no|nope|never|won't|can't|cannot|don't|stop|refuse|get out|leave me)\b", re.IGNORECASE)
# Refusal weighs most: it is opposition; a question may be only a question; an exclamation, only volume.
_CONFLICT_CUES = (("refusal", 3), ("question", 2), ("exclamation", 1))
_SLUG = re.compile(r"[^a-z0-9]+")
_TITLE_WORD = re.compile(r"[\w'’]+")
_EDGE_WORDS = frozenset({"the", "a", "an", "of", "and", "in", "on", "to", "for", "at", "by", "with", "or"})


@dataclass(frozen=True, slots=True)
class _Speech:
    character: str
    text: str  # the words spoken, parentheticals left out


@dataclass(frozen=True, slots=True)
class _SceneText:
    action: tuple[str, ...]
    speeches: tuple[_Speech, ...]


def _scene_text(section: SectionRecord, scene: Scene) -> _SceneText:
    """The parsers write a scene as its heading, then one paragraph per element; a speech is its cue,
    then its lines. A paragraph with no lower-case letter (a transition, a title card) is not action."""
    speakers = set(scene.characters)
    action: list[str] = []
    speeches: list[_Speech] = []
    for paragraph in section.text.split("\n\n")[1:]:
        lines = [line.strip() for line in paragraph.split("\n") if line.strip()]
        if len(lines) > 1 and normalise_cue(lines[0]) in speakers:
            spoken = " ".join(line for line in lines[1:] if not (line.startswith("(") and line.endswith(")")))
            if spoken:
                speeches.append(_Speech(character=normalise_cue(lines[0]), text=spoken))
        elif lines and any(char.islower() for char in paragraph):
            action.append(" ".join(lines))
    return _SceneText(action=tuple(action), speeches=tuple(speeches))


def _sentences(text: str) -> list[str]:
    return [sentence for sentence in _SENTENCE_BREAK.split(" ".join(text.split())) if sentence]


def _fit(text: str, budget: int) -> str:
    """The text, or as many of its first words as fit in `budget` tokens with an ellipsis."""
    if count_tokens(text) <= budget:
        return text
    words = text.split()
    low, high = 0, len(words)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(" ".join(words[:middle]) + "…") <= budget:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low]) + "…" if low else ""


def _opening(paragraphs: Sequence[str], budget: int, *, sentences: int = 2) -> str:
    """The first sentences of the paragraphs, as written, within `budget` tokens."""
    found: list[str] = []
    for paragraph in paragraphs:
        found.extend(_sentences(paragraph))
        if len(found) >= sentences:
            break
    return _fit(" ".join(found[:sentences]), budget)


def _conflict(speeches: Sequence[_Speech]) -> Content | None:
    """The spoken sentence with the most conflict cues (the first such one on a tie)."""
    best: tuple[int, _Speech, str, list[str]] | None = None
    for speech in speeches:
        for sentence in _sentences(speech.text):
            found = {
                "refusal": bool(_REFUSAL.search(sentence.replace("’", "'"))),
                "question": "?" in sentence,
                "exclamation": "!" in sentence,
            }
            cues = [cue for cue, _ in _CONFLICT_CUES if found[cue]]
            score = sum(weight for cue, weight in _CONFLICT_CUES if found[cue])
            if score and (best is None or score > best[0]):
                best = (score, speech, sentence, cues)
    if best is None:
        return None
    _, speech, sentence, cues = best
    return {"speaker": speech.character, "line": _fit(sentence, LINE_TOKENS), "method": f"cues: {', '.join(cues)}"}


def _json(content: Mapping[str, object]) -> str:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def _tokens(content: Mapping[str, object]) -> int:
    return count_tokens(_json(content))


def _slug(name: str) -> str:
    return _SLUG.sub("-", name.lower()).strip("-") or "thread"


def _scene_parts(sections: Sequence[SectionRecord]) -> list[ScenePart]:
    return [(section, section.scene) for section in sections if section.scene is not None]


def _pairs(scenes: Sequence[Scene]) -> list[tuple[tuple[str, str], list[str]]]:
    """Every two characters who speak in the same scenes, with those scenes' numbers, most first."""
    shared: dict[tuple[str, str], list[str]] = {}
    for scene in scenes:
        for pair in combinations(sorted(set(scene.characters)), 2):
            shared.setdefault(pair, []).append(scene.number)
    return sorted(shared.items(), key=lambda item: (-len(item[1]), item[0]))


def _pace(scene: Scene) -> str:
    share = dialogue_share(scene.dialogue_lines, scene.action_lines)
    if share >= 0.6:
        return "dialogue-led"
    if share <= 0.3:
        return "action-led"
    return "mixed"


# --- Facts every card carries, whoever writes the rest --------------------------------------------------


def _scene_facts(scene: Scene) -> Content:
    return {
        "scene": scene.number,
        "heading": scene.heading,
        "page": scene.start_page,
        "characters": list(scene.characters),
        "dialogue_share": dialogue_share(scene.dialogue_lines, scene.action_lines),
    }


def _section_facts(section: SectionRecord) -> Content:
    facts: Content = {"section": section.ordinal, "heading": " › ".join(section.heading_path)}
    if section.page is not None:
        facts["page"] = section.page
    return facts


# --- Extraction ----------------------------------------------------------------------------------------


def _extracted_scene_card(section: SectionRecord, scene: Scene) -> Content:
    text = _scene_text(section, scene)
    tone: Content = {"int_ext": scene.int_ext, "time_of_day": scene.time_of_day}
    tone = {name: value for name, value in tone.items() if value} | {
        "length_eighths": eighths(scene),
        "pace": _pace(scene),
    }
    rest: Content = {}
    conflict = _conflict(text.speeches)
    if conflict is not None:
        rest["conflict"] = conflict
    rest["tone"] = tone
    head: Content = {"method": "extractive", **_scene_facts(scene)}
    # What happens takes whatever the facts leave of the card's ~150 tokens, at least a clause.
    room = max(CARD_TOKENS - _tokens(head | rest) - 6, 24)
    happens = _opening(text.action, room)
    return head | ({"what_happens": happens} if happens else {}) | rest


def _extracted_section_card(section: SectionRecord) -> Content:
    head: Content = {"method": "extractive", **_section_facts(section)}
    summary = _opening(section.text.split("\n\n"), max(CARD_TOKENS - _tokens(head) - 6, 24))
    return head | ({"summary": summary} if summary else {})


def _extracted_card(section: SectionRecord) -> Content:
    if section.scene is not None:
        return _extracted_scene_card(section, section.scene)
    return _extracted_section_card(section)


def _position_marks(scenes: Sequence[Scene]) -> list[float]:
    """Where each scene starts, as a fraction of the script's printed length."""
    total = sum(scene.lines for scene in scenes) or 1
    marks: list[float] = []
    so_far = 0
    for scene in scenes:
        marks.append(so_far / total)
        so_far += scene.lines
    return marks


def _acts(scenes: Sequence[Scene]) -> Content:
    groups: list[tuple[str, list[Scene]]] = []
    if any(scene.act_path for scene in scenes):
        basis = "the script's own acts (its top-level sections)"
        for scene in scenes:
            act = scene.act_path[0] if scene.act_path else ""
            if not groups or groups[-1][0] != act:
                groups.append((act, []))
            groups[-1][1].append(scene)
    else:
        basis = "thirds of the script's length"
        for scene, mark in zip(scenes, _position_marks(scenes), strict=True):
            act = f"{min(2, int(mark * 3)) + 1} of 3"
            if not groups or groups[-1][0] != act:
                groups.append((act, []))
            groups[-1][1].append(scene)
    return {
        "basis": basis,
        "acts": [
            {
                "act": act,
                "scenes": len(members),
                "first_scene": members[0].number,
                "last_scene": members[-1].number,
                "pages": f"{members[0].start_page}-{members[-1].start_page}",
            }
            for act, members in groups
        ],
    }


def _turning_points(parts: Sequence[ScenePart]) -> list[Content]:
    marks = _position_marks([scene for _, scene in parts])
    points: list[Content] = []
    for percent in (25, 50, 75):
        index = max(i for i, mark in enumerate(marks) if mark <= percent / 100)
        section, scene = parts[index]
        point: Content = {"at_percent": percent, "scene": scene.number, "heading": scene.heading}
        happens = _opening(_scene_text(section, scene).action, 30, sentences=1)
        points.append(point | ({"what_happens": happens} if happens else {}))
    return points


def _extracted_screenplay_outline(title: str, sections: Sequence[SectionRecord]) -> Content:
    parts = _scene_parts(sections)
    scenes = [scene for _, scene in parts]
    logline: Content = {"title": title, "main_characters": [row.name for row in characters_report(sections)[:3]]}
    opening = _opening(_scene_text(*parts[0]).action, 60)
    if opening:
        logline["opening"] = opening
    content: Content = {
        "method": "extractive",
        "title": title,
        "scenes": len(scenes),
        "pages": pacing_report(sections).pages,
        "logline": logline,
        "act_structure": _acts(scenes),
        "turning_points": _turning_points(parts),
    }
    pairs = _pairs(scenes)
    if pairs:
        (first, second), shared = pairs[0]
        content["central_conflict"] = {
            "characters": [first, second],
            "shared_scenes": len(shared),
            "first_shared_scene": shared[0],
            "last_shared_scene": shared[-1],
            "method": "the two characters who speak in the most scenes together",
        }
    return content


def _extracted_document_outline(title: str, sections: Sequence[SectionRecord]) -> Content:
    """The headings in order with each section's first sentence, as many as fit the outline's size."""
    content: Content = {"method": "extractive", "title": title, "sections_total": len(sections)}
    entries: list[Content] = []
    for section in sections:
        entry = _section_facts(section)
        opening = _opening([section.text], 30, sentences=1)
        if opening:
            entry["opening"] = opening
        if _tokens(content | {"sections": [*entries, entry]}) > OUTLINE_TOKENS:
            break
        entries.append(entry)
    return content | {"sections": entries}


def _extracted_outline(title: str, sections: Sequence[SectionRecord]) -> Content:
    if _scene_parts(sections):
        return _extracted_screenplay_outline(title, sections)
    return _extracted_document_outline(title, sections)


def _first_and_last_lines(name: str, parts: Sequence[ScenePart]) -> Content:
    lines: list[Content] = []
    for section, scene in parts:
        for speech in _scene_text(section, scene).speeches:
            if speech.character == name:
                lines.append({"scene": scene.number, "line": _fit(speech.text, LINE_TOKENS)})
    if not lines:
        return {}
    return {"first_line": lines[0], "last_line": lines[-1]}


def _extracted_sheet(name: str, parts: Sequence[ScenePart]) -> Content | None:
    """Counts, pivotal scenes, partners and quoted lines; every scene they speak in is their arc's
    plot thread, not repeated here, so a lead's sheet stays near its size in a feature-length script."""
    present = [(section, scene) for section, scene in parts if name in scene.characters]
    if not present:
        return None
    words = {
        scene.number: sum(block.words for block in scene.dialogue_blocks if block.character == name)
        for _, scene in present
    }
    pivotal = sorted(words, key=lambda number: -words[number])[:PIVOTAL_SCENES]
    partners = Counter(other for _, scene in present for other in scene.characters if other != name)
    content: Content = {
        "method": "extractive",
        "name": name,
        "scene_count": len(present),
        "first_scene": present[0][1].number,
        "last_scene": present[-1][1].number,
        "pivotal_scenes": [
            {"scene": scene.number, "heading": scene.heading, "words_spoken": words[scene.number]}
            for _, scene in present
            if scene.number in pivotal
        ],
        "relationships": [
            {"with": other, "shared_scenes": count}
            for other, count in sorted(partners.items(), key=lambda item: (-item[1], item[0]))[:RELATIONSHIPS]
        ],
    }
    evidence = _first_and_last_lines(name, present)
    if evidence:
        content["arc_evidence"] = evidence
    return content


def _title_phrases(title: str, excluded: set[str]) -> list[list[str]]:
    """Runs of the title's words, longest first, that neither start nor end on a little word and
    hold no word of `excluded`. One word of a longer title is too common a word to be a motif."""
    words = [word.lower() for word in _TITLE_WORD.findall(title)]
    phrases: list[list[str]] = []
    for length in range(len(words), 1 if len(words) > 1 else 0, -1):
        for start in range(len(words) - length + 1):
            phrase = words[start : start + length]
            if phrase[0] not in _EDGE_WORDS and phrase[-1] not in _EDGE_WORDS and not excluded.intersection(phrase):
                phrases.append(phrase)
    return phrases


def _title_motif(title: str, parts: Sequence[ScenePart]) -> Content | None:
    """The longest run of the title's words that three scenes or more mention; none of its words
    may be in a character's name (the arcs and pairs follow the characters)."""
    names = {word.lower() for _, scene in parts for name in scene.characters for word in _TITLE_WORD.findall(name)}
    for phrase in _title_phrases(title, names):
        spoken = " ".join(phrase)
        pattern = re.compile(r"\b" + r"\W+".join(map(re.escape, phrase)) + r"\b", re.IGNORECASE)
        scenes = [scene.number for section, scene in parts if pattern.search(section.text)]
        if len(scenes) >= 3:
            return {
                "method": "extractive",
                "name": spoken,
                "thread_type": "theme",
                "scenes": scenes,
                "basis": f"the scenes that mention the title's words {spoken!r}",
            }
    return None


def _extracted_threads(title: str, sections: Sequence[SectionRecord]) -> list[Content]:
    parts = _scene_parts(sections)
    threads: list[Content] = []
    for name in main_characters(sections):
        threads.append(
            {
                "method": "extractive",
                "name": f"arc of {name}",
                "thread_type": "character_arc",
                "scenes": [scene.number for _, scene in parts if name in scene.characters],
                "basis": f"the scenes where {name} speaks",
            }
        )
    pairs = [(pair, shared) for pair, shared in _pairs([scene for _, scene in parts]) if len(shared) >= 2]
    for index, ((first, second), shared) in enumerate(pairs[: 1 + SUBPLOTS]):
        threads.append(
            {
                "method": "extractive",
                "name": f"{first} and {second}",
                "thread_type": "plot" if index == 0 else "subplot",
                "scenes": shared,
                "basis": f"the scenes where {first} and {second} both speak"
                + (" (the most shared scenes of any two)" if index == 0 else ""),
            }
        )
    motif = _title_motif(title, parts)
    if motif is not None:
        threads.append(motif)
    return threads


def _unique_keys(names: Sequence[str]) -> list[str]:
    keys: list[str] = []
    seen: Counter[str] = Counter()
    for name in names:
        slug = _slug(name)
        seen[slug] += 1
        keys.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return keys


def _extracted(kind: ArtifactKind, key: str, content: Content, source_sha256: str = "") -> ArtifactDraft:
    return ArtifactDraft(
        kind=kind,
        key=key,
        content=content,
        tokens=_tokens(content),
        model=EXTRACTIVE_MODEL,
        source_sha256=source_sha256,
    )


def carded(sections: Sequence[SectionRecord]) -> list[SectionRecord]:
    """The sections that get a card: in a screenplay its scenes (a title page or notes before the
    first scene are no scene, and their ordinals would clash with scene numbers), else every section."""
    if any(section.scene is not None or section.kind == "title_page" for section in sections):
        return [section for section in sections if section.scene is not None]
    return list(sections)


def _extract_cards(sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
    return [
        _extracted("scene_card", card_key(section), _extracted_card(section), section.content_sha256)
        for section in carded(sections)
    ]


def _extract_sheets(sections: Sequence[SectionRecord], characters: Sequence[str]) -> list[ArtifactDraft]:
    parts = _scene_parts(sections)
    drafts: list[ArtifactDraft] = []
    for name in dict.fromkeys(normalise_cue(name) for name in characters):
        sheet = _extracted_sheet(name, parts)
        if sheet is not None:
            drafts.append(_extracted("character_sheet", name, sheet))
    return drafts


def _extract_threads(title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
    threads = _extracted_threads(title, sections)
    keys = _unique_keys([str(thread["name"]) for thread in threads])
    return [_extracted("plot_thread", key, thread) for key, thread in zip(keys, threads, strict=True)]


class ExtractiveWriter:
    """Artifacts from the text alone: offline, free and the same every time (see the module's docstring)."""

    async def scene_cards(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        """A card for each of `sections` that gets one (`carded`)."""
        return await asyncio.to_thread(_extract_cards, sections)

    async def outline(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> ArtifactDraft:
        content = await asyncio.to_thread(_extracted_outline, title, sections)
        return _extracted("outline", "outline", content)

    async def character_sheets(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord], characters: Sequence[str]
    ) -> list[ArtifactDraft]:
        """A sheet for each of `characters` who speaks in the script (none for a document without scenes)."""
        return await asyncio.to_thread(_extract_sheets, sections, characters)

    async def plot_threads(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        """A screenplay's threads; a document without scenes has none."""
        return await asyncio.to_thread(_extract_threads, title, sections)


# --- Model answers: the JSON asked for each kind, validated before it is used ---------------------------

T = TypeVar("T")


class _Unusable(Exception):
    """A model's answer that cannot be used: why, in words the retry prompt repeats to the model."""


def _scene_number(value: str) -> str:
    return value.strip().removeprefix("Scene ").removeprefix("scene ").strip("# ")


SceneNumber = Annotated[str, AfterValidator(_scene_number)]
Text = Annotated[str, Field(min_length=1, max_length=1_500)]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, coerce_numbers_to_str=True)

    def cited(self) -> list[str]:
        """The scene numbers the answer cites: each must be one of the script's."""
        return []


class SceneCardAnswer(_Answer):
    key: str
    what_happens: Text
    conflict: Text
    character_change: Text
    plot_progression: Text
    tone: Text


class SectionCardAnswer(_Answer):
    key: str
    summary: Text
    key_points: list[Text] = Field(default_factory=list, max_length=5)


class CardsAnswer(_Answer):
    # Each card is validated on its own, so one bad card costs only itself.
    cards: list[dict[str, object]]


class ActAnswer(_Answer):
    act: Text
    scenes: list[SceneNumber] = Field(min_length=1)
    summary: Text


class TurningPointAnswer(_Answer):
    scene: SceneNumber
    label: Text
    what_happens: Text


class ScreenplayOutlineAnswer(_Answer):
    logline: Text
    act_structure: list[ActAnswer] = Field(min_length=1, max_length=8)
    turning_points: list[TurningPointAnswer] = Field(min_length=1, max_length=8)
    central_conflict: Text

    def cited(self) -> list[str]:
        return [number for act in self.act_structure for number in act.scenes] + [
            point.scene for point in self.turning_points
        ]


class DocumentPartAnswer(_Answer):
    heading: Text
    summary: Text


class DocumentOutlineAnswer(_Answer):
    summary: Text
    parts: list[DocumentPartAnswer] = Field(max_length=20)


class RelationshipAnswer(_Answer):
    character: Text
    relationship: Text


class PivotalSceneAnswer(_Answer):
    scene: SceneNumber
    why: Text


class CharacterSheetAnswer(_Answer):
    want: Text
    need: Text
    arc: Text
    relationships: list[RelationshipAnswer] = Field(max_length=RELATIONSHIPS)
    pivotal_scenes: list[PivotalSceneAnswer] = Field(min_length=1, max_length=5)

    def cited(self) -> list[str]:
        return [pivotal.scene for pivotal in self.pivotal_scenes]


class PlotThreadAnswer(_Answer):
    name: Text
    thread_type: ThreadType
    scenes: list[SceneNumber] = Field(min_length=1)
    description: Text


class PlotThreadsAnswer(_Answer):
    threads: list[PlotThreadAnswer] = Field(max_length=12)

    def cited(self) -> list[str]:
        return [number for thread in self.threads for number in thread.scenes]


AnswerT = TypeVar("AnswerT", bound=_Answer)


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, item['loc'])) or 'answer'}: {item['msg']}" for item in error.errors()[:3])


def _read(answer_type: type[AnswerT], text: str, scenes: frozenset[str]) -> AnswerT:
    """The answer's JSON object (a model may wrap it in prose or a code fence), validated."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise _Unusable("the answer holds no JSON object")
    try:
        answer = answer_type.model_validate_json(text[start : end + 1])
    except ValidationError as error:
        raise _Unusable(_problems(error)) from None
    unknown = [number for number in answer.cited() if number not in scenes]
    if unknown:
        raise _Unusable(f"scene numbers that are not in the script: {', '.join(unknown[:5])}")
    return answer


def _reader(answer_type: type[AnswerT], scenes: frozenset[str]) -> Callable[[str], AnswerT]:
    return lambda text: _read(answer_type, text, scenes)


# --- Prompts ----------------------------------------------------------------------------------------

_SYSTEM = (
    "You analyse screenplays and documents for their writers. Use only what the given text says: never "
    "invent events, names or scene numbers, and cite scenes by the numbers given. Answer with one JSON "
    "object of the shape asked for, and nothing else."
)
_RETRY = "Your previous answer could not be used ({problem}). Answer again with the JSON object only."
_SCENE_CARD_SHAPE = (
    '{"key": "<the key given>", "what_happens": "1-2 sentences", "conflict": "the core tension, obstacle '
    'or question", "character_change": "emotional or relational shifts", "plot_progression": "how it moves '
    'the story on", "tone": "pace and emotional register"}'
)
_SECTION_CARD_SHAPE = '{"key": "<the key given>", "summary": "1-2 sentences", "key_points": ["at most 5 short points"]}'
_SCREENPLAY_OUTLINE_SHAPE = (
    '{"logline": "one sentence", "act_structure": [{"act": "name", "scenes": ["scene numbers"], "summary": '
    '"1-2 sentences"}], "turning_points": [{"scene": "number", "label": "inciting incident, midpoint, '
    'climax, ...", "what_happens": "one sentence"}], "central_conflict": "1-2 sentences"}'
)
_DOCUMENT_OUTLINE_SHAPE = '{"summary": "2-3 sentences", "parts": [{"heading": "as given", "summary": "one sentence"}]}'
_SHEET_SHAPE = (
    '{"want": "their external goal", "need": "their internal need", "arc": "how they change from first scene '
    'to last", "relationships": [{"character": "NAME", "relationship": "one sentence"}], "pivotal_scenes": '
    '[{"scene": "number", "why": "one sentence"}]}'
)
_THREADS_SHAPE = (
    '{"threads": [{"name": "a short name", "thread_type": "character_arc | plot | subplot | theme", '
    '"scenes": ["scene numbers"], "description": "one sentence"}]}'
)
CARD_MAX_TOKENS = 300  # output cap per card: room for ~150 tokens of card and the JSON around it
OUTLINE_MAX_TOKENS = 800
SHEET_MAX_TOKENS = 500
THREADS_MAX_TOKENS = 1_200


def _digest(entries: Sequence[tuple[str, Sequence[str]]], budget: int) -> str:
    """One line per scene or section: its head, then as much of its opening as an equal share of
    `budget` allows; when even the heads do not fit, the first ones that do."""
    heads = [head for head, _ in entries]
    room = (budget - sum(count_tokens(head) + 3 for head in heads)) // max(1, len(entries))
    lines: list[str] = []
    used = 0
    for head, paragraphs in entries:
        opening = _opening(paragraphs, room) if room >= 8 else ""
        line = f"{head} | {opening}" if opening else head
        used += count_tokens(line) + 1
        if used > budget:
            break
        lines.append(line)
    return "\n".join(lines)


def _scene_digest(parts: Sequence[ScenePart], budget: int) -> str:
    return _digest(
        [
            (
                f"{scene.number} | {scene.heading} | p.{scene.start_page} | {', '.join(scene.characters) or '-'}",
                _scene_text(section, scene).action,
            )
            for section, scene in parts
        ],
        budget,
    )


def _section_digest(sections: Sequence[SectionRecord], budget: int) -> str:
    return _digest(
        [
            (f"[{section.ordinal}] {' › '.join(section.heading_path) or '-'}", section.text.split("\n\n"))
            for section in sections
        ],
        budget,
    )


def _facts_json(content: Mapping[str, object]) -> str:
    return _json({name: value for name, value in content.items() if name != "method"})


def _cards_prompt(sections: Sequence[SectionRecord]) -> str:
    scenes = sections[0].scene is not None
    what, shape = ("scene", _SCENE_CARD_SHAPE) if scenes else ("section", _SECTION_CARD_SHAPE)
    texts = "\n\n".join(
        f'--- key "{card_key(section)}" ---\n{_fit(section.text, SECTION_PROMPT_TOKENS)}' for section in sections
    )
    return (
        f"Write a card of about {CARD_TOKENS} tokens for each {what} below, one per key, as JSON:\n"
        f'{{"cards": [{shape}]}}\n\n{texts}'
    )


def _outline_prompt(title: str, sections: Sequence[SectionRecord], facts: Mapping[str, object]) -> str:
    parts = _scene_parts(sections)
    if parts:
        return (
            f'Outline the screenplay "{title}" in under {OUTLINE_TOKENS} tokens, as JSON:\n'
            f"{_SCREENPLAY_OUTLINE_SHAPE}\n\nCounted from the script: {_facts_json(facts)}\n\n"
            f"Its scenes (number | heading | page | who speaks | how it opens):\n{_scene_digest(parts, DIGEST_TOKENS)}"
        )
    return (
        f'Outline the document "{title}" in under {OUTLINE_TOKENS} tokens, as JSON:\n{_DOCUMENT_OUTLINE_SHAPE}\n\n'
        f"Its sections ([ordinal] heading | how it opens):\n{_section_digest(sections, DIGEST_TOKENS)}"
    )


def _sheet_prompt(title: str, name: str, parts: Sequence[ScenePart], facts: Mapping[str, object]) -> str:
    present = [(section, scene) for section, scene in parts if name in scene.characters]
    return (
        f'Write a character sheet for {name} in "{title}", under {SHEET_TOKENS} tokens, with 3-5 pivotal '
        f"scenes, as JSON:\n{_SHEET_SHAPE}\n\nCounted from the script: {_facts_json(facts)}\n\n"
        f"The scenes where {name} speaks (number | heading | page | who speaks | how it opens):\n"
        f"{_scene_digest(present, CHARACTER_DIGEST_TOKENS)}"
    )


def _threads_prompt(title: str, parts: Sequence[ScenePart], main: Sequence[str], facts: Sequence[ArtifactDraft]) -> str:
    counted = "\n".join(_facts_json(draft.content) for draft in facts)
    return (
        f'Name the plot threads of the screenplay "{title}": a character_arc for each main character '
        f"({', '.join(main) or 'none'}), the plot, its subplots, and a theme only where the scenes show one; "
        f"as JSON:\n{_THREADS_SHAPE}\n\nCounted from the script:\n{counted}\n\n"
        f"Its scenes (number | heading | page | who speaks | how it opens):\n{_scene_digest(parts, DIGEST_TOKENS)}"
    )


# --- The model writer -----------------------------------------------------------------------------------

FALLBACK_NOTE = "the model's answers could not be used, twice; extracted from the text instead"


def _fallback(draft: ArtifactDraft) -> ArtifactDraft:
    content = dict(draft.content) | {"fallback": FALLBACK_NOTE}
    return replace(draft, content=content, tokens=_tokens(content))


def _model_of(completion: Completion) -> str:
    return f"{completion.provider}/{completion.model}"


def _shares(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights` into whole numbers that add up to it (largest remainders)."""
    if not weights:
        return []
    weights = [max(1, weight) for weight in weights]
    exact = [total * weight / sum(weights) for weight in weights]
    shares = [int(part) for part in exact]
    by_remainder = sorted(range(len(exact)), key=lambda index: (shares[index] - exact[index], index))
    for index in by_remainder[: total - sum(shares)]:
        shares[index] += 1
    return shares


def _request_id(sections: Sequence[SectionRecord], kind: str, key: str) -> str:
    """What chat-svc carries on the call's usage event: the document and the artifact, within an id's size."""
    document = str(sections[0].document_id) if sections else ""
    request_id = f"{document}:{kind}:{key}"
    if len(request_id) + 2 > MAX_ID_CHARS:  # + ":<attempt>"
        request_id = f"{document}:{hashlib.sha256(f'{kind}:{key}'.encode()).hexdigest()[:16]}"
    return request_id


def _batches(sections: Sequence[SectionRecord]) -> list[list[SectionRecord]]:
    batches: list[list[SectionRecord]] = []
    size = 0
    for section in sections:
        tokens = min(section.tokens, SECTION_PROMPT_TOKENS)
        if batches and len(batches[-1]) < CARD_BATCH_SCENES and size + tokens <= CARD_BATCH_TOKENS:
            batches[-1].append(section)
            size += tokens
        else:
            batches.append([section])
            size = tokens
    return batches


async def _all(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Every call's result in order; the first failure cancels the rest (no more spending) and is raised."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class ModelWriter:
    """Artifacts written by the configured model through chat-svc (see the module's docstring).
    `BudgetExceeded` and `Unavailable` from the completer propagate: the caller decides."""

    def __init__(self, completer: Completer, *, concurrency: int = CONCURRENT_COMPLETIONS) -> None:
        self._completer = completer
        self._slots = asyncio.Semaphore(concurrency)

    async def _complete(self, *, owner: Owner, prompt: str, max_tokens: int, request_id: str) -> Completion:
        async with self._slots:
            return await self._completer.complete(
                owner=owner, system=_SYSTEM, prompt=prompt, max_tokens=max_tokens, request_id=request_id
            )

    async def _ask(
        self, *, owner: Owner, prompt: str, max_tokens: int, request_id: str, read: Callable[[str], AnswerT]
    ) -> tuple[AnswerT, Completion] | None:
        """The model's answer, asked a second time (told why) when the first cannot be used; None after two."""
        asked = prompt
        for attempt in (1, 2):
            completion = await self._complete(
                owner=owner, prompt=asked, max_tokens=max_tokens, request_id=f"{request_id}:{attempt}"
            )
            try:
                return read(completion.text), completion
            except _Unusable as problem:
                log.warning("unusable artifact answer for %s (attempt %d): %s", request_id, attempt, problem)
                asked = f"{prompt}\n\n{_RETRY.format(problem=problem)}"
        return None

    async def scene_cards(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        """A card for each of `sections` that gets one (`carded`), several to a completion."""
        batches = _batches(carded(sections))
        written = await _all([self._card_batch(owner, batch) for batch in batches])
        return [draft for batch in written for draft in batch]

    async def _card_batch(self, owner: Owner, batch: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        """The batch's cards; a card missing or malformed in the answer is asked again, once, on its own
        batch of what is left, then extracted."""
        written: dict[str, ArtifactDraft] = {}
        pending = list(batch)
        problem = ""
        batch_key = f"{card_key(batch[0])}-{card_key(batch[-1])}"
        for attempt in (1, 2):
            prompt = await asyncio.to_thread(_cards_prompt, pending)
            if problem:
                prompt += f"\n\n{_RETRY.format(problem=problem)}"
            completion = await self._complete(
                owner=owner,
                prompt=prompt,
                max_tokens=CARD_MAX_TOKENS * len(pending),
                request_id=f"{_request_id(batch, 'scene_card', batch_key)}:{attempt}",
            )
            cards, problem = _read_cards(completion.text, pending)
            written |= _model_cards(pending, cards, completion)
            pending = [section for section in pending if card_key(section) not in written]
            if not pending:
                break
            log.warning("unusable cards %s (attempt %d): %s", [card_key(s) for s in pending], attempt, problem)
        return [written.get(card_key(section)) or _fallback(_extract_cards([section])[0]) for section in batch]

    async def outline(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> ArtifactDraft:
        facts = await asyncio.to_thread(_extracted_outline, title, sections)
        prompt = await asyncio.to_thread(_outline_prompt, title, sections, facts)
        parts = _scene_parts(sections)
        answer_type: type[_Answer] = ScreenplayOutlineAnswer if parts else DocumentOutlineAnswer
        scenes = frozenset(scene.number for _, scene in parts)
        got = await self._ask(
            owner=owner,
            prompt=prompt,
            max_tokens=OUTLINE_MAX_TOKENS,
            request_id=_request_id(sections, "outline", "outline"),
            read=_reader(answer_type, scenes),
        )
        if got is None:
            return _fallback(_extracted("outline", "outline", facts))
        answer, completion = got
        counted: Content = {
            name: facts[name] for name in ("title", "scenes", "pages", "sections_total") if name in facts
        }
        content: Content = {"method": "model", **counted, **answer.model_dump()}
        return ArtifactDraft(
            kind="outline",
            key="outline",
            content=content,
            tokens=completion.output_tokens,
            model=_model_of(completion),
            source_sha256="",
        )

    async def character_sheets(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord], characters: Sequence[str]
    ) -> list[ArtifactDraft]:
        """A sheet for each of `characters` who speaks in the script (none for a document without scenes)."""
        facts = await asyncio.to_thread(_extract_sheets, sections, characters)
        return await _all([self._sheet(owner, title, sections, draft) for draft in facts])

    async def _sheet(
        self, owner: Owner, title: str, sections: Sequence[SectionRecord], facts: ArtifactDraft
    ) -> ArtifactDraft:
        name = facts.key
        parts = _scene_parts(sections)
        prompt = await asyncio.to_thread(_sheet_prompt, title, name, parts, facts.content)
        got = await self._ask(
            owner=owner,
            prompt=prompt,
            max_tokens=SHEET_MAX_TOKENS,
            request_id=_request_id(sections, "character_sheet", name),
            read=_reader(CharacterSheetAnswer, frozenset(scene.number for _, scene in parts)),
        )
        if got is None:
            return _fallback(facts)
        answer, completion = got
        shared = Counter(other for _, scene in parts if name in scene.characters for other in scene.characters)
        counted = {field: facts.content[field] for field in ("name", "scene_count", "first_scene", "last_scene")}
        content: Content = {
            "method": "model",
            **counted,
            "want": answer.want,
            "need": answer.need,
            "arc": answer.arc,
            "relationships": [_relationship(relation, shared) for relation in answer.relationships],
            "pivotal_scenes": [pivotal.model_dump() for pivotal in answer.pivotal_scenes],
        }
        return ArtifactDraft(
            kind="character_sheet",
            key=name,
            content=content,
            tokens=completion.output_tokens,
            model=_model_of(completion),
            source_sha256="",
        )

    async def plot_threads(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        """A screenplay's threads; a document without scenes has none."""
        parts = _scene_parts(sections)
        if not parts:
            return []
        facts = await asyncio.to_thread(_extract_threads, title, sections)
        prompt = await asyncio.to_thread(_threads_prompt, title, parts, main_characters(sections), facts)
        got = await self._ask(
            owner=owner,
            prompt=prompt,
            max_tokens=THREADS_MAX_TOKENS,
            request_id=_request_id(sections, "plot_thread", "threads"),
            read=_reader(PlotThreadsAnswer, frozenset(scene.number for _, scene in parts)),
        )
        if got is None:
            return [_fallback(draft) for draft in facts]
        answer, completion = got
        contents: list[Content] = [{"method": "model", **thread.model_dump()} for thread in answer.threads]
        keys = _unique_keys([thread.name for thread in answer.threads])
        tokens = _shares(completion.output_tokens, [_tokens(content) for content in contents])
        return [
            ArtifactDraft(
                kind="plot_thread",
                key=key,
                content=content,
                tokens=share,
                model=_model_of(completion),
                source_sha256="",
            )
            for key, content, share in zip(keys, contents, tokens, strict=True)
        ]


def _relationship(relation: RelationshipAnswer, shared: Counter[str]) -> Content:
    """A relationship the model names, under the character's cue and with the scenes the two share
    when the other one speaks in the script; as the model wrote it otherwise (someone who never speaks)."""
    cue = normalise_cue(relation.character)
    if cue in shared:
        return {"with": cue, "shared_scenes": shared[cue], "relationship": relation.relationship}
    return {"with": relation.character, "relationship": relation.relationship}


def _read_cards(
    text: str, sections: Sequence[SectionRecord]
) -> tuple[dict[str, SceneCardAnswer | SectionCardAnswer], str]:
    """The usable cards of an answer by key, and what was wrong with the rest ("" when nothing)."""
    try:
        envelope = _read(CardsAnswer, text, frozenset())
    except _Unusable as problem:
        return {}, str(problem)
    by_key = {card_key(section): section for section in sections}
    cards: dict[str, SceneCardAnswer | SectionCardAnswer] = {}
    problems: list[str] = []
    for item in envelope.cards:
        key = _scene_number(str(item.get("key", "")))
        section = by_key.get(key)
        if section is None:
            problems.append(f"a card for key {key!r}, which was not asked for")
            continue
        answer_type: type[SceneCardAnswer | SectionCardAnswer] = (
            SceneCardAnswer if section.scene is not None else SectionCardAnswer
        )
        try:
            cards[key] = answer_type.model_validate(item | {"key": key})
        except ValidationError as error:
            problems.append(f"card {key!r}: {_problems(error)}")
    missing = [key for key in by_key if key not in cards]
    if missing and not problems:
        problems.append(f"no card for keys {', '.join(missing)}")
    return cards, "; ".join(problems)


def _model_cards(
    sections: Sequence[SectionRecord],
    cards: Mapping[str, SceneCardAnswer | SectionCardAnswer],
    completion: Completion,
) -> dict[str, ArtifactDraft]:
    """Drafts of the cards the answer held; each is counted its share of the completion's output tokens."""
    written = [section for section in sections if card_key(section) in cards]
    contents: list[Content] = []
    for section in written:
        facts = _scene_facts(section.scene) if section.scene is not None else _section_facts(section)
        contents.append({"method": "model", **facts, **cards[card_key(section)].model_dump(exclude={"key"})})
    shares = _shares(completion.output_tokens, [_tokens(content) for content in contents])
    return {
        card_key(section): ArtifactDraft(
            kind="scene_card",
            key=card_key(section),
            content=content,
            tokens=share,
            model=_model_of(completion),
            source_sha256=section.content_sha256,
        )
        for section, content, share in zip(written, contents, shares, strict=True)
    }
