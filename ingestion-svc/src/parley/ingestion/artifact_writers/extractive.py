"""`ExtractiveWriter` (`local`, the default): artifacts offline and deterministic, built only from the
text and the counted facts of `screenplay_reports`. What a model would judge (a character's want, a
scene's plot progression) is either quoted evidence or absent, never made up; its content says
`"method": "extractive"`.

Screenplay heuristics, each named in the content: what happens = a scene's first action
sentences; its conflict = the line of dialogue with the most refusal, question and exclamation
cues; acts = the script's own top-level Fountain sections, else thirds of its length; turning
points = the scenes at 1/4, 1/2 and 3/4 of its length; the central conflict and the plot thread =
the two characters who speak in the most scenes together; pivotal scenes = where a character
speaks most; a theme only when a phrase of the title recurs in the scenes.
"""

import asyncio
import re
from collections import Counter
from collections.abc import Sequence

from parley.ingestion.artifact_writers.coverage import extracted_coverage
from parley.ingestion.artifact_writers.drafts import (
    CARD_TOKENS,
    EXTRACTIVE_MODEL,
    LINE_TOKENS,
    OUTLINE_TOKENS,
    PIVOTAL_SCENES,
    RELATIONSHIPS,
    SUBPLOTS,
    ArtifactDraft,
    ArtifactKind,
    main_characters,
)
from parley.ingestion.artifact_writers.reading import (
    Content,
    ScenePart,
    conflict_line,
    fit_tokens,
    json_tokens,
    opening_of,
    pace_of,
    read_scene,
    scene_facts,
    scene_parts,
    section_facts,
    slug_of,
    speaking_pairs,
)
from parley.ingestion.clients import Owner
from parley.ingestion.screenplay import normalise_cue
from parley.ingestion.screenplay_reports import card_key, characters_report, eighths, pacing_report
from parley.ingestion.sections import Scene
from parley.ingestion.store import ArtifactRecord, SectionRecord

_TITLE_WORD = re.compile(r"[\w'’]+")
_EDGE_WORDS = frozenset({"the", "a", "an", "of", "and", "in", "on", "to", "for", "at", "by", "with", "or"})


def _extracted_scene_card(section: SectionRecord, scene: Scene) -> Content:
    text = read_scene(section, scene)
    tone: Content = {"int_ext": scene.int_ext, "time_of_day": scene.time_of_day}
    tone = {name: value for name, value in tone.items() if value} | {
        "length_eighths": eighths(scene),
        "pace": pace_of(scene),
    }
    rest: Content = {}
    conflict = conflict_line(text.speeches)
    if conflict is not None:
        rest["conflict"] = conflict
    rest["tone"] = tone
    head: Content = {"method": "extractive", **scene_facts(scene)}
    # What happens takes whatever the facts leave of the card's ~150 tokens, at least a clause.
    room = max(CARD_TOKENS - json_tokens(head | rest) - 6, 24)
    happens = opening_of(text.action, room)
    return head | ({"what_happens": happens} if happens else {}) | rest


def _extracted_section_card(section: SectionRecord) -> Content:
    head: Content = {"method": "extractive", **section_facts(section)}
    summary = opening_of(section.text.split("\n\n"), max(CARD_TOKENS - json_tokens(head) - 6, 24))
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
        happens = opening_of(read_scene(section, scene).action, 30, sentences=1)
        points.append(point | ({"what_happens": happens} if happens else {}))
    return points


def _extracted_screenplay_outline(title: str, sections: Sequence[SectionRecord]) -> Content:
    parts = scene_parts(sections)
    scenes = [scene for _, scene in parts]
    logline: Content = {"title": title, "main_characters": [row.name for row in characters_report(sections)[:3]]}
    opening = opening_of(read_scene(*parts[0]).action, 60)
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
    pairs = speaking_pairs(scenes)
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
        entry = section_facts(section)
        opening = opening_of([section.text], 30, sentences=1)
        if opening:
            entry["opening"] = opening
        if json_tokens(content | {"sections": [*entries, entry]}) > OUTLINE_TOKENS:
            break
        entries.append(entry)
    return content | {"sections": entries}


def extracted_outline(title: str, sections: Sequence[SectionRecord]) -> Content:
    if scene_parts(sections):
        return _extracted_screenplay_outline(title, sections)
    return _extracted_document_outline(title, sections)


def _first_and_last_lines(name: str, parts: Sequence[ScenePart]) -> Content:
    lines: list[Content] = []
    for section, scene in parts:
        for speech in read_scene(section, scene).speeches:
            if speech.character == name:
                lines.append({"scene": scene.number, "line": fit_tokens(speech.text, LINE_TOKENS)})
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
    parts = scene_parts(sections)
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
    pairs = [(pair, shared) for pair, shared in speaking_pairs([scene for _, scene in parts]) if len(shared) >= 2]
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


def unique_keys(names: Sequence[str]) -> list[str]:
    keys: list[str] = []
    seen: Counter[str] = Counter()
    for name in names:
        slug = slug_of(name)
        seen[slug] += 1
        keys.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return keys


def extracted_draft(kind: ArtifactKind, key: str, content: Content, source_sha256: str = "") -> ArtifactDraft:
    return ArtifactDraft(
        kind=kind,
        key=key,
        content=content,
        tokens=json_tokens(content),
        model=EXTRACTIVE_MODEL,
        source_sha256=source_sha256,
    )


def carded(sections: Sequence[SectionRecord]) -> list[SectionRecord]:
    """The sections that get a card: in a screenplay its scenes (a title page or notes before the
    first scene are no scene, and their ordinals would clash with scene numbers), else every section."""
    if any(section.scene is not None or section.kind == "title_page" for section in sections):
        return [section for section in sections if section.scene is not None]
    return list(sections)


def extract_cards(sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
    return [
        extracted_draft("scene_card", card_key(section), _extracted_card(section), section.content_sha256)
        for section in carded(sections)
    ]


def extract_sheets(sections: Sequence[SectionRecord], characters: Sequence[str]) -> list[ArtifactDraft]:
    parts = scene_parts(sections)
    drafts: list[ArtifactDraft] = []
    for name in dict.fromkeys(normalise_cue(name) for name in characters):
        sheet = _extracted_sheet(name, parts)
        if sheet is not None:
            drafts.append(extracted_draft("character_sheet", name, sheet))
    return drafts


def extract_threads(title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
    threads = _extracted_threads(title, sections)
    keys = unique_keys([str(thread["name"]) for thread in threads])
    return [extracted_draft("plot_thread", key, thread) for key, thread in zip(keys, threads, strict=True)]


class ExtractiveWriter:
    """Artifacts from the text alone: offline, free and the same every time (see the module's docstring)."""

    async def scene_cards(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        """A card for each of `sections` that gets one (`carded`)."""
        return await asyncio.to_thread(extract_cards, sections)

    async def outline(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> ArtifactDraft:
        content = await asyncio.to_thread(extracted_outline, title, sections)
        return extracted_draft("outline", "outline", content)

    async def character_sheets(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord], characters: Sequence[str]
    ) -> list[ArtifactDraft]:
        """A sheet for each of `characters` who speaks in the script (none for a document without scenes)."""
        return await asyncio.to_thread(extract_sheets, sections, characters)

    async def plot_threads(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        """A screenplay's threads; a document without scenes has none."""
        return await asyncio.to_thread(extract_threads, title, sections)

    async def coverage(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord], artifacts: Sequence[ArtifactRecord]
    ) -> ArtifactDraft:
        """The coverage report from counted figures (coverage.py); it reads no other artifact."""
        return await asyncio.to_thread(extracted_coverage, title, sections)
