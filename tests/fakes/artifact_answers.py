"""What the fakes answer to ingestion's artifact prompts, as a model would: JSON of the shape the
prompt asks for, built from what the prompt says, citing only the scenes it lists.

The fakes answer the coverage prompt (`artifact_writers.prompts.coverage_prompt`, which begins
"Write the coverage report of the screenplay") this way; any other prompt gets their usual answer.
A fake told not to (`Behaviour.writes_artifacts = False`) answers the coverage prompt with its plain
prose too, which the writer cannot use: how a test makes it fall back.
"""

import json
import re
from collections import Counter

from tests.fakes.http_server import JsonObject

COVERAGE_ASK = "Write the coverage report of the screenplay"
_TITLE = re.compile(re.escape(COVERAGE_ASK) + r' "(?P<title>.*?)"')
_CRITERIA = re.compile(r"^Criteria: (?P<names>.+)\.$", re.MULTILINE)
_SCENES = "Its scenes (number | heading | page | who speaks | what happens):\n"


def prompt_text(messages: object) -> str:
    """The text of a request's messages (a string, or content blocks / parts with text), joined."""
    texts: list[str] = []
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "\n".join(texts)


def artifact_answer(body: JsonObject) -> str | None:
    """The answer to an artifact prompt this module knows; None for any other request."""
    text = prompt_text(body.get("messages"))
    if COVERAGE_ASK not in text:
        return None
    return json.dumps(coverage(text))


def coverage(prompt: str) -> JsonObject:
    """A reader's report on the scenes the prompt lists: the lead is who speaks in the most of them;
    each criterion is scored 5-9 (deterministically, from its place and the scene count) and cites
    the opening, middle and closing scenes, one of them per criterion in turn."""
    title = match.group("title") if (match := _TITLE.search(prompt)) else "the script"
    criteria = [name.strip() for name in match.group("names").split(",")] if (match := _CRITERIA.search(prompt)) else []
    rows = [line.split(" | ") for line in prompt.partition(_SCENES)[2].splitlines() if " | " in line]
    numbers = [row[0] for row in rows]
    headings = [row[1] for row in rows]
    speakers = Counter(name for row in rows if len(row) > 3 for name in row[3].split(", ") if name != "-")
    cast = [name for name, _ in speakers.most_common(3)] or ["NOBODY"]
    anchors = [numbers[0], numbers[len(numbers) // 2], numbers[-1]] if numbers else []
    scores = [
        {
            "criterion": name,
            "score": 5 + (3 * index + len(numbers)) % 5,
            "scenes": list(dict.fromkeys(anchors[index % 3 :] + anchors[: index % 3]))[:2],
            "why": f"The {name} shows in these scenes.",
        }
        for index, name in enumerate(criteria)
    ]
    ranked = sorted(scores, key=lambda score: -int(str(score["score"])))
    return {
        "logline": f"In {title}, {cast[0]} is pulled from {headings[0] if headings else 'the start'} toward an ending "
        "they cannot talk their way out of.",
        "synopsis": f"It opens at {headings[0] if headings else '?'}, turns at "
        f"{headings[len(headings) // 2] if headings else '?'}, and ends at {headings[-1] if headings else '?'}.",
        "character_breakdown": [
            {
                "name": name,
                "role": "lead" if at == 0 else "support",
                "description": f"Speaks in {speakers[name]} scenes.",
            }
            for at, name in enumerate(cast)
        ],
        "strengths": [f"{score['criterion']}: {score['why']}" for score in ranked[:2]] or ["A clear lead."],
        "weaknesses": [f"{score['criterion']}: could be stronger." for score in ranked[-2:]] or ["Thin."],
        "scores": scores,
    }
