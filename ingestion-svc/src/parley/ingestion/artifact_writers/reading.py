"""Reading a scene's text back into action and speech, and the counted facts every card carries
whoever writes the rest: what both writers and the prompts read a script through."""

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from parley.ingestion.artifact_writers.drafts import LINE_TOKENS
from parley.ingestion.screenplay import normalise_cue
from parley.ingestion.screenplay_reports import dialogue_share
from parley.ingestion.sections import Scene
from parley.ingestion.store import SectionRecord
from parley.kit.tokens import count_tokens

Content = dict[str, object]
ScenePart = tuple[SectionRecord, Scene]

_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"'”’)])\s+")
_REFUSAL = re.compile(r"\b(?:no|nope|never|won't|can't|cannot|don't|stop|refuse|get out|leave me)\b", re.IGNORECASE)
# Refusal weighs most: it is opposition; a question may be only a question; an exclamation, only volume.
_CONFLICT_CUES = (("refusal", 3), ("question", 2), ("exclamation", 1))
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Speech:
    character: str
    text: str  # the words spoken, parentheticals left out


@dataclass(frozen=True, slots=True)
class SceneText:
    action: tuple[str, ...]
    speeches: tuple[Speech, ...]


def read_scene(section: SectionRecord, scene: Scene) -> SceneText:
    """The parsers write a scene as its heading, then one paragraph per element; a speech is its cue,
    then its lines. A paragraph with no lower-case letter (a transition, a title card) is not action."""
    speakers = set(scene.characters)
    action: list[str] = []
    speeches: list[Speech] = []
    for paragraph in section.text.split("\n\n")[1:]:
        lines = [line.strip() for line in paragraph.split("\n") if line.strip()]
        if len(lines) > 1 and normalise_cue(lines[0]) in speakers:
            spoken = " ".join(line for line in lines[1:] if not (line.startswith("(") and line.endswith(")")))
            if spoken:
                speeches.append(Speech(character=normalise_cue(lines[0]), text=spoken))
        elif lines and any(char.islower() for char in paragraph):
            action.append(" ".join(lines))
    return SceneText(action=tuple(action), speeches=tuple(speeches))


def split_sentences(text: str) -> list[str]:
    return [sentence for sentence in _SENTENCE_BREAK.split(" ".join(text.split())) if sentence]


def fit_tokens(text: str, budget: int) -> str:
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


def opening_of(paragraphs: Sequence[str], budget: int, *, sentences: int = 2) -> str:
    """The first sentences of the paragraphs, as written, within `budget` tokens."""
    found: list[str] = []
    for paragraph in paragraphs:
        found.extend(split_sentences(paragraph))
        if len(found) >= sentences:
            break
    return fit_tokens(" ".join(found[:sentences]), budget)


def conflict_line(speeches: Sequence[Speech]) -> Content | None:
    """The spoken sentence with the most conflict cues (the first such one on a tie)."""
    best: tuple[int, Speech, str, list[str]] | None = None
    for speech in speeches:
        for sentence in split_sentences(speech.text):
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
    return {
        "speaker": speech.character,
        "line": fit_tokens(sentence, LINE_TOKENS),
        "method": f"cues: {', '.join(cues)}",
    }


def compact_json(content: Mapping[str, object]) -> str:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def json_tokens(content: Mapping[str, object]) -> int:
    return count_tokens(compact_json(content))


def slug_of(name: str) -> str:
    return _SLUG.sub("-", name.lower()).strip("-") or "thread"


def scene_parts(sections: Sequence[SectionRecord]) -> list[ScenePart]:
    return [(section, section.scene) for section in sections if section.scene is not None]


def speaking_pairs(scenes: Sequence[Scene]) -> list[tuple[tuple[str, str], list[str]]]:
    """Every two characters who speak in the same scenes, with those scenes' numbers, most first."""
    shared: dict[tuple[str, str], list[str]] = {}
    for scene in scenes:
        for pair in combinations(sorted(set(scene.characters)), 2):
            shared.setdefault(pair, []).append(scene.number)
    return sorted(shared.items(), key=lambda item: (-len(item[1]), item[0]))


def pace_of(scene: Scene) -> str:
    share = dialogue_share(scene.dialogue_lines, scene.action_lines)
    if share >= 0.6:
        return "dialogue-led"
    if share <= 0.3:
        return "action-led"
    return "mixed"


# --- Facts every card carries, whoever writes the rest --------------------------------------------------


def scene_facts(scene: Scene) -> Content:
    return {
        "scene": scene.number,
        "heading": scene.heading,
        "page": scene.start_page,
        "characters": list(scene.characters),
        "dialogue_share": dialogue_share(scene.dialogue_lines, scene.action_lines),
    }


def section_facts(section: SectionRecord) -> Content:
    facts: Content = {"section": section.ordinal, "heading": " › ".join(section.heading_path)}
    if section.page is not None:
        facts["page"] = section.page
    return facts
