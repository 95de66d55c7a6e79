"""Tables (rich) and CSV of what the API answers: search hits, scenes, characters, usage."""

import csv
import re
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

MARK = re.compile(r"</?mark>")


PASSAGE_CHARS = 400


def _marked(snippet: str) -> str:
    """The API's snippet is escaped HTML with <mark> around matched words: bold here instead,
    its white space folded and its length cut, so a table row stays a few lines."""
    snippet = " ".join(snippet.split())
    if len(snippet) > PASSAGE_CHARS:
        snippet = snippet[:PASSAGE_CHARS].rsplit(" ", 1)[0] + " …"
    if snippet.count("<mark>") > snippet.count("</mark>"):
        snippet += "</mark>"
    text = escape(snippet.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&#x27;", "'"))
    text = text.replace("&amp;", "&")
    return text.replace("<mark>", "[bold yellow]").replace("</mark>", "[/]")


def search(console: Console, hits: list[dict[str, Any]]) -> None:
    if not hits:
        console.print("nothing found")
        return
    table = Table("#", "score", "document", "where", "passage", show_lines=True)
    table.columns[4].ratio = 3  # the passage gets the width
    for rank, hit in enumerate(hits, 1):
        where = hit["heading"] or ""
        if hit.get("scene_number"):
            where = f"scene {hit['scene_number']}: {where}"
        table.add_row(
            str(rank), f"{hit['score']:.3f}", escape(hit["document_title"]), escape(where), _marked(hit["snippet"])
        )
    console.print(table)


def scenes(console: Console, sections: list[dict[str, Any]], pacing: dict[str, Any]) -> None:
    eighths = {s["number"]: s for s in pacing["per_scene"]}
    table = Table(
        "scene",
        "heading",
        "page",
        "characters",
        "length",
        "dialogue",
        title=f"{pacing['scenes']} scenes, {pacing['pages']} pages",
    )
    for section in sections:
        scene = section.get("scene")
        if not scene:
            continue
        paced = eighths.get(scene["number"], {})
        length = paced.get("eighths", 0)
        table.add_row(
            scene["number"],
            escape(section["heading"]),
            str(section.get("page") or ""),
            escape(", ".join(scene["characters"])),
            f"{length // 8} {length % 8}/8" if length >= 8 else f"{length}/8",
            f"{round(paced.get('dialogue_share', 0) * 100)} %",
        )
    console.print(table)


def characters(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table("name", "scenes", "speeches", "words", "first", "last", "longest absence", "most with")
    for c in rows:
        shared = f"{c['most_shared_with']} ({c['shared_scenes']})" if c.get("most_shared_with") else ""
        table.add_row(
            escape(c["name"]),
            str(c["scenes"]),
            str(c["dialogue_blocks"]),
            str(c["words"]),
            c["first_scene"],
            c["last_scene"],
            str(c["longest_absence"]),
            escape(shared),
        )
    console.print(table)


USAGE_FIELDS = [
    "events",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "total_tokens",
    "cost_usd",
]


def usage(console: Console, answer: dict[str, Any], quota: dict[str, Any]) -> None:
    table = Table(
        answer["group_by"], *(f.replace("_", " ") for f in USAGE_FIELDS), title=f"since {answer['since'][:10]}"
    )
    for row in [*answer["rows"], {**answer["total"], "group": "total"}]:
        table.add_row(escape(row["group"] or "—"), *(_cell(field, row[field]) for field in USAGE_FIELDS))
    console.print(table)
    limit = quota["monthly_limit_usd"]
    left = (
        "no limit"
        if limit is None
        else f"${max(0.0, limit - quota['spent_usd'] - quota['reserved_usd']):.2f} of ${limit:.2f} left"
    )
    console.print(f"this month: ${quota['spent_usd']:.4f} spent, ${quota['reserved_usd']:.4f} held; {left}")


def _cell(field: str, value: float) -> str:
    return f"${value:.6f}" if field == "cost_usd" else f"{int(value):,}"


def usage_csv(out: TextIO, answer: dict[str, Any]) -> None:
    writer = csv.writer(out)
    writer.writerow([answer["group_by"], *USAGE_FIELDS])
    for row in answer["rows"]:
        writer.writerow([row["group"], *(row[field] for field in USAGE_FIELDS)])
