"""A screenplay's breakdown sheet, the production office's one row per scene: scene number,
INT/EXT, location, time of day, length in eighths of a page, start page, cast (who speaks), and
the scene card's one-line synopsis. Built from what ingestion already keeps — the stored scenes
(`ListSections`), their pacing (`GetPacing`: eighths) and the scene cards (`GetArtifacts`) — and
never asked of a model. A scene whose card is not written yet has an empty synopsis."""

import csv
import io
import json
import re
from collections.abc import Sequence

from pydantic import BaseModel

from parley.v1 import ingestion_pb2

COLUMNS = ("scene", "int_ext", "location", "time_of_day", "eighths", "start_page", "cast", "synopsis")
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)")
SYNOPSIS_CHARS = 200


class BreakdownRow(BaseModel):
    scene: str
    int_ext: str
    location: str
    time_of_day: str
    eighths: int
    start_page: int
    cast: list[str]
    synopsis: str


class BreakdownOut(BaseModel):
    document_id: str
    scenes: list[BreakdownRow]


def rows(
    sections: Sequence[ingestion_pb2.Section],
    pacing: ingestion_pb2.PacingReport,
    cards: Sequence[ingestion_pb2.Artifact],
) -> list[BreakdownRow]:
    eighths = {scene.number: scene.eighths for scene in pacing.per_scene}
    synopses = {card.key: _synopsis(card) for card in cards if card.kind == "scene_card"}
    return [
        BreakdownRow(
            scene=section.scene.number,
            int_ext=section.scene.int_ext,
            location=section.scene.location,
            time_of_day=section.scene.time_of_day,
            eighths=eighths.get(section.scene.number, 0),
            start_page=section.scene.start_page,
            cast=list(section.scene.characters),
            synopsis=synopses.get(section.scene.number, ""),
        )
        for section in sections
        if section.HasField("scene")
    ]


def as_csv(found: Sequence[BreakdownRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in found:
        cast = "; ".join(row.cast)
        writer.writerow(
            [row.scene, row.int_ext, row.location, row.time_of_day, row.eighths, row.start_page, cast, row.synopsis]
        )
    return out.getvalue()


def _synopsis(card: ingestion_pb2.Artifact) -> str:
    """The card's first sentence of what happens (a model's card or an extracted one alike)."""
    try:
        content = json.loads(card.content_json)
    except ValueError:
        return ""
    text = " ".join(str(content.get("what_happens") or content.get("summary") or "").split())
    match = _FIRST_SENTENCE.match(text)
    sentence = match.group(1) if match else text
    return sentence if len(sentence) <= SYNOPSIS_CHARS else sentence[: SYNOPSIS_CHARS - 1].rstrip() + "…"
