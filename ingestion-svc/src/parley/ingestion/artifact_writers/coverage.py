"""A screenplay's coverage report, the reader's one-document verdict: logline, synopsis, character
breakdown, strengths, weaknesses, and scores on named criteria, each with the scenes that justify
it. Artifact kind `coverage`, key `coverage`, written after the character sheets of an analyzed
script and stale like the outline (after `outline_stale_after_scenes` changed scenes).

This is the extractive version (`ExtractiveWriter`'s, and the model writer's fall-back), offline
and deterministic, built only from the stored scenes and `screenplay_reports`: its content says
`"method": "extractive"` and names each criterion's heuristic. A score is 1-10 from a counted
figure, never a judgement of quality the text cannot show: structure (how evenly the thirds
divide the pages), pacing (scenes over three pages), dialogue balance (the script's dialogue
share against 50 %), character focus (the lead's share of scenes). A score of 7 or more is a
strength, 5 or less a weakness. The model's version is `ModelWriter.coverage` (model.py).
"""

import json
from collections.abc import Sequence
from typing import Any

from parley.ingestion.artifact_writers.drafts import EXTRACTIVE_MODEL, ArtifactDraft, main_characters
from parley.ingestion.screenplay_reports import characters_report, eighths, pacing_report, scenes_of
from parley.ingestion.store import SectionRecord
from parley.kit.tokens import count_tokens

LONG_SCENE_EIGHTHS = 24  # three pages
SYNOPSIS_POINTS = (0.0, 0.25, 0.5, 0.75, 1.0)
SENTENCE_CHARS = 220
JUSTIFYING_SCENES = 3


def extracted_coverage(title: str, sections: Sequence[SectionRecord]) -> ArtifactDraft:
    content = extract(title, sections)
    return ArtifactDraft(
        kind="coverage",
        key="coverage",
        content=content,
        tokens=count_tokens(json.dumps(content, ensure_ascii=False)),
        model=EXTRACTIVE_MODEL,
        source_sha256="",
    )


def extract(title: str, sections: Sequence[SectionRecord]) -> dict[str, Any]:
    scenes = scenes_of(sections)
    by_number = {section.scene.number: section for section in sections if section.scene is not None}
    rows = characters_report(sections)
    pacing = pacing_report(sections)
    main = main_characters(sections)
    lead = rows[0] if rows else None

    def opening(number: str) -> str:
        section = by_number.get(number)
        if section is None:
            return ""
        body = [line.strip() for line in section.text.split("\n")[1:] if line.strip()]
        first = body[0] if body else ""
        return first if len(first) <= SENTENCE_CHARS else first[: SENTENCE_CHARS - 1].rstrip() + "…"

    points = sorted({min(len(scenes) - 1, int(at * (len(scenes) - 1))) for at in SYNOPSIS_POINTS}) if scenes else []
    synopsis = [{"scene": scenes[i].number, "what_happens": opening(scenes[i].number)} for i in points]

    criteria: list[dict[str, Any]] = []
    if scenes:
        thirds = [0, 0, 0]
        for index, scene in enumerate(scenes):
            thirds[min(2, index * 3 // len(scenes))] += eighths(scene)
        total = sum(thirds) or 1
        evenness = 1 - (max(thirds) - min(thirds)) / total
        turning = [scenes[i].number for i in points[1:-1]]
        criteria.append(
            _criterion("structure", 1 + 9 * evenness, turning, "how evenly the script's thirds divide its pages")
        )
        long = sorted(scenes, key=lambda scene: -eighths(scene))
        over = [scene for scene in scenes if eighths(scene) > LONG_SCENE_EIGHTHS]
        criteria.append(
            _criterion(
                "pacing",
                10 - 9 * min(1.0, 4 * len(over) / len(scenes)),
                [scene.number for scene in long[:JUSTIFYING_SCENES]],
                f"scenes longer than {LONG_SCENE_EIGHTHS // 8} pages (the longest cited)",
            )
        )
        talky = sorted(pacing.per_scene, key=lambda scene: -scene.dialogue_share)
        criteria.append(
            _criterion(
                "dialogue balance",
                10 - 18 * abs(pacing.dialogue_share - 0.5),
                [scene.number for scene in talky[:JUSTIFYING_SCENES]],
                f"the script's dialogue share ({pacing.dialogue_share:.0%}) against 50 % (the talkiest scenes cited)",
            )
        )
    if lead is not None and scenes:
        share = lead.scenes / len(scenes)
        criteria.append(
            _criterion(
                "character focus",
                1 + 9 * min(1.0, share / 0.6),
                [lead.first_scene, lead.last_scene],
                f"the share of scenes {lead.name} speaks in ({share:.0%}; 60 % or more scores 10)",
            )
        )
    logline: dict[str, Any] = {"title": title, "main_characters": main[:3]}
    if scenes:
        logline["opening"] = opening(scenes[0].number)
    return {
        "method": "extractive",
        "title": title,
        "pages": pacing.pages,
        "scenes": len(scenes),
        "logline": logline,
        "synopsis": synopsis,
        "character_breakdown": [
            {
                "name": row.name,
                "scenes": row.scenes,
                "first_scene": row.first_scene,
                "last_scene": row.last_scene,
                "most_shared_with": row.most_shared_with,
            }
            for row in rows
            if row.name in main
        ],
        "scores": criteria,
        "strengths": [f"{c['criterion']}: {c['method']}" for c in criteria if c["score"] >= 7],
        "weaknesses": [f"{c['criterion']}: {c['method']}" for c in criteria if c["score"] <= 5],
    }


def _criterion(name: str, raw: float, scenes: Sequence[str], method: str) -> dict[str, Any]:
    return {"criterion": name, "score": max(1, min(10, round(raw))), "scenes": list(scenes), "method": method}
