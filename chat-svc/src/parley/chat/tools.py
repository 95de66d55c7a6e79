"""The writers' room tool set: what a model may look up in the conversation's scripts, defined
once (name, description, JSON schema) and run here against ingestion and retrieval.

A tool answers in plain text a model and a person can read (scene numbers, headings, pages),
cut to `MAX_RESULT_BYTES` so the turn's hold can bound every round. A tool that cannot answer
(an unknown scene, a character who never speaks, a bad argument, a service down) returns an
error result the model reads and may recover from; it never fails the turn.

`route` is the deterministic router the `local` provider uses to answer, offline, the questions
a tool answers exactly ("Which scenes does EDWARD appear in?" → `get_character_scenes`).
"""

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from parley.chat.clients import Collections, Retrieval, Scripts
from parley.chat.global_context import GlobalContexts, Script, compact, index_line
from parley.chat.tool_calls import ToolCall, ToolResult, ToolSpec
from parley.kit.contracts import MAX_COLLECTIONS_PER_CONVERSATION, MAX_QUERY_CHARS
from parley.kit.errors import InvalidInput, ParleyError
from parley.kit.identity import Identity
from parley.v1 import ingestion_pb2

log = logging.getLogger(__name__)

MAX_RESULT_BYTES = 6_000
MAX_CALLS_PER_ROUND = 4  # more in one round are answered with an error, so the hold's bound holds
SEARCH_K = 5
SCENE_TEXT_BYTES = 3_500

_DOCUMENT = {"type": "string", "description": "document_id of the script; leave out for the conversation's first"}
_SCENE = {"type": "string", "description": 'the scene number as the script numbers it, e.g. "12" or "12A"'}
_CHARACTER = {"type": "string", "description": "the character's name as in the script, e.g. EDWARD"}


def _tool(name: str, description: str, required: Sequence[str] = (), **properties: dict[str, Any]) -> ToolSpec:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {**properties, "document_id": _DOCUMENT},
        "required": list(required),
    }
    return ToolSpec(name, description, schema)


TOOLS: tuple[ToolSpec, ...] = (
    _tool("get_scene", "The full text of one scene, with its heading and page.", ["scene"], scene=_SCENE),
    _tool(
        "get_scene_context",
        "A scene's card with the cards of the scenes just before and after it.",
        ["scene"],
        scene=_SCENE,
        around={"type": "integer", "minimum": 0, "maximum": 5, "description": "scenes on each side (1)"},
    ),
    _tool(
        "get_character_scenes",
        "Every scene a character speaks in, in order, with headings and pages.",
        ["character"],
        character=_CHARACTER,
    ),
    _tool(
        "search_script",
        "Search the conversation's documents for passages about something (keywords and meaning).",
        ["query"],
        query={"type": "string", "description": "what to look for"},
    ),
    _tool("analyze_pacing", "The script's pacing: pages, scenes, dialogue share, acts, the longest scenes."),
    _tool("get_plot_threads", "The script's plot threads: each with its type and the scenes it runs through."),
    _tool("get_outline", "The script's outline: logline, acts, turning points, central conflict."),
    _tool(
        "get_character_sheet",
        "A main character's sheet: scenes, pivotal moments, relationships, arc.",
        ["character"],
        character=_CHARACTER,
    ),
    _tool(
        "list_scenes",
        "The scene index (number | heading | who speaks | what happens), optionally from one scene to another.",
        from_scene=_SCENE,
        to_scene=_SCENE,
    ),
    _tool("get_coverage", "The script's coverage report: logline, synopsis, strengths, weaknesses, scores."),
)
TOOL_NAMES = frozenset(spec.name for spec in TOOLS)


class ToolFailed(Exception):
    """What the model is told when a tool cannot answer."""


class Toolbox:
    def __init__(self, *, scripts: Scripts, retrieval: Retrieval) -> None:
        self._scripts = scripts
        self._retrieval = retrieval

    async def run(
        self,
        identity: Identity,
        call: ToolCall,
        *,
        scripts: Sequence[Script],
        collection_ids: Sequence[str],
        first_passage: int = 1,
    ) -> ToolResult:
        try:
            if call.name == "search_script":
                return await self._search(identity, call, collection_ids, first_passage)
            text = await self._run(identity, call, scripts=scripts, collection_ids=collection_ids)
        except ToolFailed as failed:
            return ToolResult(call, str(failed), is_error=True)
        except ParleyError as error:  # NotFound, FailedPrecondition, Unavailable: said as they are
            return ToolResult(call, f"{call.name} failed: {error}", is_error=True)
        except Exception:
            log.exception("tool failed", extra={"fields": {"tool": call.name}})
            return ToolResult(call, f"{call.name} failed; try another way", is_error=True)
        return ToolResult(call, _cut_bytes(text, MAX_RESULT_BYTES))

    async def _run(
        self, identity: Identity, call: ToolCall, *, scripts: Sequence[Script], collection_ids: Sequence[str]
    ) -> str:
        if call.name not in TOOL_NAMES:
            raise ToolFailed(f"there is no tool {call.name!r}; the tools are {', '.join(sorted(TOOL_NAMES))}")
        args = call.arguments
        script = _script(scripts, args.get("document_id"))
        document_id = script.document.id
        if call.name == "get_outline":
            return _artifact_text(script, "outline") or _missing(script, "an outline")
        if call.name == "get_plot_threads":
            threads = script.of_kind("plot_thread")
            return "\n".join(f"- {compact(thread)}" for thread in threads) or _missing(script, "plot threads")
        if call.name == "get_character_sheet":
            name = _character(
                _text(args, "character"), [str(sheet.get("name", "")) for sheet in script.of_kind("character_sheet")]
            )
            sheet = next(sheet for sheet in script.of_kind("character_sheet") if sheet.get("name") == name)
            return f"{name}: {compact(sheet)}"
        if call.name == "list_scenes":
            cards = script.of_kind("scene_card")
            numbers = [str(card.get("scene", card.get("section", ""))) for card in cards]
            start = numbers.index(str(args["from_scene"])) if args.get("from_scene") in numbers else 0
            end = numbers.index(str(args["to_scene"])) + 1 if args.get("to_scene") in numbers else len(cards)
            return "\n".join(index_line(card) for card in cards[start:end]) or _missing(script, "scene cards")
        if call.name == "get_coverage":
            found = await self._scripts.artifacts(identity, document_id, ["coverage"])
            if not found:
                raise ToolFailed(f"no coverage report has been written for {script.document.title!r} yet")
            return compact(json.loads(found[0].content_json))
        if call.name == "analyze_pacing":
            return _pacing(await self._scripts.pacing(identity, document_id))
        sections = await self._scripts.sections(identity, document_id)
        scenes = [section for section in sections if section.HasField("scene")]
        if call.name == "get_character_scenes":
            names = sorted({name for section in scenes for name in section.scene.characters})
            name = _character(_text(args, "character"), names)
            present = [section.scene for section in scenes if name in section.scene.characters]
            listed = "\n".join(f"{scene.number} | {scene.heading} | page {scene.start_page}" for scene in present)
            return f"{name} speaks in {len(present)} of {len(scenes)} scenes:\n{listed}"
        number = _text(args, "scene").removeprefix("scene ").strip()
        at = next((i for i, section in enumerate(scenes) if section.scene.number == number), None)
        if at is None:
            raise ToolFailed(f"{script.document.title!r} has no scene {number!r}; its scenes run 1 to {len(scenes)}")
        if call.name == "get_scene":
            section = scenes[at]
            text = _cut_bytes(section.text, SCENE_TEXT_BYTES)
            return f"Scene {number}: {section.scene.heading} (page {section.scene.start_page})\n{text}"
        around = max(0, min(5, int(args.get("around", 1) or 1)))
        by_number = {str(card.get("scene")): card for card in script.of_kind("scene_card")}
        lines = []
        for section in scenes[max(0, at - around) : at + around + 1]:
            card = by_number.get(section.scene.number)
            mark = "→ " if section.scene.number == number else "  "
            lines.append(mark + (index_line(card) if card else f"{section.scene.number} | {section.scene.heading}"))
        own = by_number.get(number)
        return "\n".join(lines) + (f"\n\nScene {number}'s card: {compact(own)}" if own else "")

    async def _search(
        self, identity: Identity, call: ToolCall, collection_ids: Sequence[str], first: int
    ) -> ToolResult:
        query = _text(call.arguments, "query")
        found = await self._retrieval.search(
            identity, query=query[:MAX_QUERY_CHARS], collection_ids=collection_ids, k=SEARCH_K
        )
        if not found.hits:
            return ToolResult(call, f"nothing found for {query!r}")
        numbered = tuple(enumerate(found.hits[:SEARCH_K], start=first))
        text = "\n\n".join(
            f"[{n}] ({hit.document_title}{' › ' + hit.heading if hit.heading else ''}"
            f"{', scene ' + hit.scene_number if hit.scene_number else ''})\n{_cut_bytes(hit.text, 800)}"
            for n, hit in numbered
        )
        return ToolResult(call, _cut_bytes(text, MAX_RESULT_BYTES), passages=numbered)


def _text(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str | int) or not str(value).strip():
        raise ToolFailed(f"the argument {name!r} is required")
    return str(value).strip()


def _script(scripts: Sequence[Script], document_id: object) -> Script:
    if not scripts:
        raise ToolFailed("this conversation has no script with scenes, outline or cards yet")
    if not document_id:
        return scripts[0]
    for script in scripts:
        if script.document.id == document_id:
            return script
    raise ToolFailed(
        f"no document {document_id!r} in this conversation; its scripts: "
        + ", ".join(f"{s.document.title} ({s.document.id})" for s in scripts)
    )


def _character(asked: str, names: Sequence[str]) -> str:
    """The script's name for a character asked about in any case, with or without "the"."""
    wanted = " ".join(asked.upper().split())
    bare = wanted.removeprefix("THE ")
    for candidate in (wanted, bare):
        if candidate in names:
            return candidate
    near = [name for name in names if bare in name.split() or name.removeprefix("THE ") == bare]
    if len(near) == 1:
        return near[0]
    raise ToolFailed(f"no character {asked!r} speaks in this script; those who do: {', '.join(names[:40])}")


def _artifact_text(script: Script, kind: str) -> str:
    return "\n".join(compact(content) for content in script.of_kind(kind))


def _missing(script: Script, what: str) -> str:
    raise ToolFailed(f"{script.document.title!r} has no {what} yet (they are written as it is analysed)")


def _pacing(report: ingestion_pb2.PacingReport) -> str:
    longest = sorted(report.per_scene, key=lambda scene: -scene.eighths)[:5]
    lines = [
        f"{report.pages} pages, {report.scenes} scenes, dialogue share {report.dialogue_share:.0%}",
        "day/night: " + ", ".join(f"{k} {v}" for k, v in sorted(report.day_night.items())),
        "int/ext: " + ", ".join(f"{k} {v}" for k, v in sorted(report.int_ext.items())),
        "acts: " + "; ".join(f"{act.act}: {act.scenes} scenes, {act.pages:.1f} pages" for act in report.per_act),
        "longest scenes: "
        + "; ".join(f"{s.number} {s.heading} ({s.eighths}/8 pages, dialogue {s.dialogue_share:.0%})" for s in longest),
    ]
    return "\n".join(lines)


def _cut_bytes(text: str, limit: int) -> str:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 4].decode(errors="ignore") + " […]"


# --- The local router: tool-shaped questions answered without a model ----------------------------

_WHO = r"(?P<who>[A-Za-z][\w'.-]*(?:\s+[A-Za-z][\w'.-]*){0,2}?)"
_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            rf"\bscenes?\b.*?\b(?:does|do|did|is|are|was|were)\s+{_WHO}\s+(?:appear|speak|show up|feature|in)\b", re.I
        ),
        "get_character_scenes",
    ),
    (
        re.compile(rf"\bscenes?\b.*?\b(?:feature|features|featuring|with|has|have)\s+{_WHO}\s*[?.!]*$", re.I),
        "get_character_scenes",
    ),
    (re.compile(rf"\bwhere (?:does|do) {_WHO} (?:appear|speak|show up)\b", re.I), "get_character_scenes"),
    (re.compile(rf"\b(?:character )?sheet (?:for|of|on) {_WHO}\s*[?.!]*$", re.I), "get_character_sheet"),
    (
        re.compile(r"\bscene\s+(?P<scene>\d+[A-Z]?)\b.*\b(?:around|before|after|context|surround)", re.I),
        "get_scene_context",
    ),
    (
        re.compile(r"\b(?:around|before|after|context of)\b.*\bscene\s+(?P<scene>\d+[A-Z]?)\b", re.I),
        "get_scene_context",
    ),
    (re.compile(r"\bscene\s+(?P<scene>\d+[A-Z]?)\b", re.I), "get_scene"),
    (re.compile(r"\bpac(?:ing|e)\b", re.I), "analyze_pacing"),
    (re.compile(r"\b(?:plot threads?|subplots?)\b", re.I), "get_plot_threads"),
    (re.compile(r"\bcoverage\b", re.I), "get_coverage"),
    (re.compile(r"\blist (?:the |all )?(?:of the )?scenes\b", re.I), "list_scenes"),
    (re.compile(r"\boutline\b", re.I), "get_outline"),
    (re.compile(r"\bsearch (?:the script |the documents )?for (?P<query>.+?)[?.!]*$", re.I), "search_script"),
)


def route(question: str) -> ToolCall | None:
    """The tool call a question asks for, when it asks for exactly one; deterministic."""
    for pattern, name in _ROUTES:
        match = pattern.search(question.strip())
        if match is None:
            continue
        groups = match.groupdict()
        arguments: dict[str, Any] = {}
        if "who" in groups:
            arguments["character"] = re.sub(r"^(?:the|a|an)\s+", "", groups["who"], flags=re.I)
        if "scene" in groups:
            arguments["scene"] = groups["scene"]
        if "query" in groups:
            arguments["query"] = groups["query"]
        return ToolCall(id=f"local_{name}", name=name, arguments=arguments)
    return None


async def run_all(
    toolbox: Toolbox,
    identity: Identity,
    calls: Sequence[ToolCall],
    *,
    scripts: Sequence[Script],
    collection_ids: Sequence[str],
    first_passage: int = 1,
) -> list[ToolResult]:
    """A round's calls at once, in the order asked; past `MAX_CALLS_PER_ROUND`, refused. Each
    search gets its own run of passage numbers from `first_passage` on."""
    allowed = list(calls[:MAX_CALLS_PER_ROUND])
    firsts, at = [], first_passage
    for call in allowed:
        firsts.append(at)
        at += SEARCH_K if call.name == "search_script" else 0
    results = await asyncio.gather(
        *(
            toolbox.run(identity, call, scripts=scripts, collection_ids=collection_ids, first_passage=first)
            for call, first in zip(allowed, firsts, strict=True)
        )
    )
    refused = [
        ToolResult(call, f"at most {MAX_CALLS_PER_ROUND} tool calls a round", is_error=True)
        for call in calls[MAX_CALLS_PER_ROUND:]
    ]
    return [*results, *refused]


class ToolDesk:
    """The tools for a caller that is not a turn's model (the gateway's MCP server): one call over
    the caller's collections, each checked to be the caller's first."""

    def __init__(self, *, toolbox: Toolbox, scripts: GlobalContexts, collections: Collections) -> None:
        self._toolbox = toolbox
        self._scripts = scripts
        self._collections = collections

    async def run(self, identity: Identity, *, collection_ids: Sequence[str], name: str, arguments: str) -> ToolResult:
        if not collection_ids:
            raise InvalidInput("name the collections whose documents the tool reads")
        if len(collection_ids) > MAX_COLLECTIONS_PER_CONVERSATION:
            raise InvalidInput(f"at most {MAX_COLLECTIONS_PER_CONVERSATION} collections")
        for collection_id in collection_ids:  # another tenant's collection is NotFound
            await self._collections.require(identity, collection_id)
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except ValueError as error:
            raise InvalidInput(f"arguments_json is not JSON: {error}") from None
        if not isinstance(parsed, dict):
            raise InvalidInput("arguments_json must be a JSON object")
        scripts = await self._scripts.scripts(identity, collection_ids)
        call = ToolCall(id="direct", name=name, arguments=parsed)
        return await self._toolbox.run(identity, call, scripts=scripts, collection_ids=collection_ids)
