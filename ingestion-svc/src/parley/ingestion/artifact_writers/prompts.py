"""What the model writer asks: the system prompt, the JSON shape and output cap of each kind, and
the prompts. Outlines, sheets and threads read a digest of the whole script (each scene's number,
heading, page, speakers and first action sentences) cut to `DIGEST_TOKENS`, so a feature-length
script fits one prompt."""

from collections.abc import Mapping, Sequence

from parley.ingestion.artifact_writers.drafts import (
    CARD_TOKENS,
    CHARACTER_DIGEST_TOKENS,
    COVERAGE_CRITERIA,
    COVERAGE_DIGEST_TOKENS,
    COVERAGE_TOKENS,
    DIGEST_TOKENS,
    JUSTIFYING_SCENES,
    OUTLINE_TOKENS,
    SECTION_PROMPT_TOKENS,
    SHEET_TOKENS,
    ArtifactDraft,
)
from parley.ingestion.artifact_writers.reading import (
    ScenePart,
    compact_json,
    fit_tokens,
    opening_of,
    read_scene,
    scene_parts,
)
from parley.ingestion.screenplay_reports import card_key
from parley.ingestion.sections import Scene
from parley.ingestion.store import ArtifactRecord, SectionRecord
from parley.kit.tokens import count_tokens

SYSTEM = (
    "You analyse screenplays and documents for their writers. Use only what the given text says: never "
    "invent events, names or scene numbers, and cite scenes by the numbers given. Answer with one JSON "
    "object of the shape asked for, and nothing else."
)
RETRY = "Your previous answer could not be used ({problem}). Answer again with the JSON object only."
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
COVERAGE_MAX_TOKENS = 1_500
COVERAGE_ASK = "Write the coverage report of the screenplay"  # how a coverage prompt begins
_COVERAGE_SHAPE = (
    '{"logline": "one sentence", "synopsis": "one paragraph, beginning to end", "character_breakdown": '
    '[{"name": "NAME", "role": "protagonist, antagonist, ...", "description": "one sentence"}], "strengths": '
    '["one sentence each, at most 5"], "weaknesses": ["one sentence each, at most 5"], "scores": [{"criterion": '
    '"one of the criteria", "score": 1-10, "scenes": ["the scene numbers that justify it, at most '
    f'{JUSTIFYING_SCENES}"], "why": "one sentence"}}]}}'
)


def _digest(entries: Sequence[tuple[str, Sequence[str]]], budget: int) -> str:
    """One line per scene or section: its head, then as much of its opening as an equal share of
    `budget` allows; when even the heads do not fit, the first ones that do."""
    heads = [head for head, _ in entries]
    room = (budget - sum(count_tokens(head) + 3 for head in heads)) // max(1, len(entries))
    lines: list[str] = []
    used = 0
    for head, paragraphs in entries:
        opening = opening_of(paragraphs, room) if room >= 8 else ""
        line = f"{head} | {opening}" if opening else head
        used += count_tokens(line) + 1
        if used > budget:
            break
        lines.append(line)
    return "\n".join(lines)


def _scene_head(scene: Scene) -> str:
    return f"{scene.number} | {scene.heading} | p.{scene.start_page} | {', '.join(scene.characters) or '-'}"


def _scene_digest(parts: Sequence[ScenePart], budget: int) -> str:
    return _digest([(_scene_head(scene), read_scene(section, scene).action) for section, scene in parts], budget)


def _carded_digest(parts: Sequence[ScenePart], cards: Mapping[str, Mapping[str, object]], budget: int) -> str:
    """The scene digest, each scene's line told by its card's `what_happens` where it has a card
    that says, else by its opening as in `_scene_digest`."""
    entries: list[tuple[str, Sequence[str]]] = []
    for section, scene in parts:
        happens = cards.get(card_key(section), {}).get("what_happens")
        told = [happens] if isinstance(happens, str) and happens else read_scene(section, scene).action
        entries.append((_scene_head(scene), told))
    return _digest(entries, budget)


def _section_digest(sections: Sequence[SectionRecord], budget: int) -> str:
    return _digest(
        [
            (f"[{section.ordinal}] {' › '.join(section.heading_path) or '-'}", section.text.split("\n\n"))
            for section in sections
        ],
        budget,
    )


def _facts_json(content: Mapping[str, object]) -> str:
    return compact_json({name: value for name, value in content.items() if name != "method"})


def cards_prompt(sections: Sequence[SectionRecord]) -> str:
    scenes = sections[0].scene is not None
    what, shape = ("scene", _SCENE_CARD_SHAPE) if scenes else ("section", _SECTION_CARD_SHAPE)
    texts = "\n\n".join(
        f'--- key "{card_key(section)}" ---\n{fit_tokens(section.text, SECTION_PROMPT_TOKENS)}' for section in sections
    )
    return (
        f"Write a card of about {CARD_TOKENS} tokens for each {what} below, one per key, as JSON:\n"
        f'{{"cards": [{shape}]}}\n\n{texts}'
    )


def outline_prompt(title: str, sections: Sequence[SectionRecord], facts: Mapping[str, object]) -> str:
    parts = scene_parts(sections)
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


def sheet_prompt(title: str, name: str, parts: Sequence[ScenePart], facts: Mapping[str, object]) -> str:
    present = [(section, scene) for section, scene in parts if name in scene.characters]
    return (
        f'Write a character sheet for {name} in "{title}", under {SHEET_TOKENS} tokens, with 3-5 pivotal '
        f"scenes, as JSON:\n{_SHEET_SHAPE}\n\nCounted from the script: {_facts_json(facts)}\n\n"
        f"The scenes where {name} speaks (number | heading | page | who speaks | how it opens):\n"
        f"{_scene_digest(present, CHARACTER_DIGEST_TOKENS)}"
    )


def threads_prompt(title: str, parts: Sequence[ScenePart], main: Sequence[str], facts: Sequence[ArtifactDraft]) -> str:
    counted = "\n".join(_facts_json(draft.content) for draft in facts)
    return (
        f'Name the plot threads of the screenplay "{title}": a character_arc for each main character '
        f"({', '.join(main) or 'none'}), the plot, its subplots, and a theme only where the scenes show one; "
        f"as JSON:\n{_THREADS_SHAPE}\n\nCounted from the script:\n{counted}\n\n"
        f"Its scenes (number | heading | page | who speaks | how it opens):\n{_scene_digest(parts, DIGEST_TOKENS)}"
    )


def coverage_prompt(
    title: str, parts: Sequence[ScenePart], facts: Mapping[str, object], artifacts: Sequence[ArtifactRecord]
) -> str:
    """The coverage asked of what the script's other artifacts already say (its outline, main
    characters' sheets and plot threads, whole; its scenes through their cards) and the counted
    figures of the extractive report, so the model reads the script once more only as a digest."""
    written: dict[str, list[Mapping[str, object]]] = {}
    for artifact in artifacts:
        written.setdefault(artifact.kind, []).append(artifact.content)
    cards = {artifact.key: artifact.content for artifact in artifacts if artifact.kind == "scene_card"}
    counted = {name: facts[name] for name in ("title", "pages", "scenes", "character_breakdown") if name in facts}
    measures = facts.get("scores")
    if isinstance(measures, list):
        counted["counted_measures"] = [
            {field: measure[field] for field in ("criterion", "score", "method")} for measure in measures
        ]
    blocks = [
        f'{COVERAGE_ASK} "{title}" as a studio reader would, under {COVERAGE_TOKENS} tokens, as JSON:\n'
        f"{_COVERAGE_SHAPE}\n"
        f"Score each criterion below once, 1 (poor) to 10 (excellent), with the scenes that justify the score.\n"
        f"Criteria: {', '.join(COVERAGE_CRITERIA)}.",
        f"Counted from the script (measures, not judgements): {compact_json(counted)}",
    ]
    for kind, label in (
        ("outline", "Its outline"),
        ("character_sheet", "Its main characters' sheets"),
        ("plot_thread", "Its plot threads"),
    ):
        if written.get(kind):
            blocks.append(f"{label}:\n" + "\n".join(_facts_json(content) for content in written[kind]))
    blocks.append(
        "Its scenes (number | heading | page | who speaks | what happens):\n"
        + _carded_digest(parts, cards, COVERAGE_DIGEST_TOKENS)
    )
    return "\n\n".join(blocks)
