"""The global context of a conversation: the scripts (and outlined documents) of its collections,
in the prompt once, at its front, where a provider's prompt cache reads it on every later turn.

Per document, in this order, as far as the tier's global allowance (`contracts.tier_global_budget`)
goes: a header line (title, kind, id — the id the tools take), the outline, the main characters'
sheets, the plot threads (name, type, how many scenes, first and last), then a compact index of
the scene cards, one line per scene (number | heading | who speaks | what happens, cut short).
What does not fit is the end of the index, said in one line (the `list_scenes` tool lists it).

Rendering is deterministic: the same artifacts give the same bytes, so every turn of a
conversation sends the same prefix and a provider reads it from its cache. Artifacts are read
from ingestion (`GetArtifacts`, never `fresh`: reading them writes nothing and costs nothing),
and kept in this process per document state (id, version, status, progress, updated_at), so a
turn asks ingestion only for the list of documents once the artifacts are known.

Which documents: every screenplay with an analysis state (partial or analyzed); an ordinary
document only when its collection has at most `PROBED_DOCUMENTS` documents (asking a large
collection's every document for an outline would cost a call each), and only if it has an outline.
"""

import asyncio
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from parley.chat.clients import Scripts
from parley.kit.errors import NotFound
from parley.kit.identity import Identity
from parley.kit.tokens import count_tokens, encoding
from parley.v1 import ingestion_pb2

GLOBAL_KINDS = ("outline", "character_sheet", "plot_thread", "scene_card")
PROBED_DOCUMENTS = 5
MAX_SCRIPTS = 3  # a conversation over a whole shelf of scripts keeps the first three in its prompt
INDEX_LINE_TOKENS = 18  # of a card's "what happens" in the index
THREAD_SCENES_SHOWN = 3
CACHED_DOCUMENTS = 256
HEADING = (
    "What you know of the whole of the documents, from their outlines, character sheets and scene cards. "
    "You may use it too; cite it by scene number, like (scene 12)."
)
# Content keys that say how an artifact was made, not what it says: left out of the prompt.
_HOW_MADE = frozenset({"method", "basis"})


@dataclass(frozen=True, slots=True)
class Script:
    """One document whose artifacts the conversation knows."""

    document: ingestion_pb2.Document
    artifacts: tuple[ingestion_pb2.Artifact, ...]

    def of_kind(self, kind: str) -> list[dict[str, object]]:
        return [_content(artifact) for artifact in self.artifacts if artifact.kind == kind]


@dataclass(frozen=True, slots=True)
class GlobalContext:
    text: str
    scripts: tuple[Script, ...]
    notes: tuple[str, ...] = ()

    @property
    def tokens(self) -> int:
        return count_tokens(self.text) if self.text else 0


EMPTY = GlobalContext(text="", scripts=())


class GlobalContexts:
    def __init__(self, *, scripts: Scripts) -> None:
        self._scripts = scripts
        self._cache: OrderedDict[tuple[str, ...], tuple[ingestion_pb2.Artifact, ...]] = OrderedDict()

    async def scripts(self, identity: Identity, collection_ids: Sequence[str]) -> list[Script]:
        """The documents of these collections that have artifacts, each with them, in collection
        order then the collection's own order."""
        listed = await asyncio.gather(*(self._scripts.documents(identity, cid) for cid in collection_ids))
        wanted: list[tuple[ingestion_pb2.Document, tuple[str, ...]]] = []
        for documents in listed:
            for document in documents:
                if document.analysis_state in ("partial", "analyzed"):
                    wanted.append((document, GLOBAL_KINDS))
                elif not document.analysis_state and len(documents) <= PROBED_DOCUMENTS:
                    wanted.append((document, ("outline", "scene_card")))
        found = await asyncio.gather(*(self._artifacts(identity, document, kinds) for document, kinds in wanted))
        scripts = [
            Script(document, artifacts)
            for (document, _), artifacts in zip(wanted, found, strict=True)
            # A document enters the prompt by its outline, a screenplay already by its scene cards.
            if any(a.kind == "outline" for a in artifacts) or (document.analysis_state and artifacts)
        ]
        return scripts[:MAX_SCRIPTS]

    async def build(self, identity: Identity, collection_ids: Sequence[str], *, budget: int) -> GlobalContext:
        if budget <= 0:
            return EMPTY
        scripts = await self.scripts(identity, collection_ids)
        if not scripts:
            return EMPTY
        return await asyncio.to_thread(render, scripts, budget)

    async def _artifacts(
        self, identity: Identity, document: ingestion_pb2.Document, kinds: Sequence[str]
    ) -> tuple[ingestion_pb2.Artifact, ...]:
        # Artifacts change only with the document's state (a batch written moves `done` or
        # `updated_at`; a new version moves `version`): the same state is the same artifacts.
        key = (
            identity.tenant_id,
            document.id,
            str(document.version),
            str(document.status),
            str(document.done),
            document.updated_at.ToJsonString(),
            ",".join(kinds),
        )
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        try:
            artifacts = tuple(await self._scripts.artifacts(identity, document.id, kinds))
        except NotFound:  # deleted since it was listed: a turn goes on without it
            return ()
        self._cache[key] = artifacts
        if len(self._cache) > CACHED_DOCUMENTS:
            self._cache.popitem(last=False)
        return artifacts


def render(scripts: Sequence[Script], budget: int) -> GlobalContext:
    """Each document's essentials (header, outline, sheets, threads) first, then the scene
    indexes in what room is left."""
    essentials = [_essentials(script) for script in scripts]
    room = budget - count_tokens(HEADING) - sum(count_tokens(text) for text in essentials)
    notes: list[str] = []
    if room < 0:  # even the essentials are too long: the later documents go
        while essentials and room < 0:
            room += count_tokens(essentials.pop())
        notes.append(f"global: {len(scripts) - len(essentials)} of {len(scripts)} documents left out")
        scripts = scripts[: len(essentials)]
    blocks: list[str] = []
    for script, essential in zip(scripts, essentials, strict=True):
        index, room, left_out = _index(script, room)
        if left_out:
            notes.append(f"global: {left_out} scene cards of {script.document.title!r} left out of the index")
        blocks.append("\n".join(part for part in (essential, index) if part))
    if not blocks:
        return GlobalContext(text="", scripts=tuple(scripts), notes=tuple(notes))
    return GlobalContext(text="\n\n".join([HEADING, *blocks]), scripts=tuple(scripts), notes=tuple(notes))


def _content(artifact: ingestion_pb2.Artifact) -> dict[str, object]:
    try:
        loaded = json.loads(artifact.content_json)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _essentials(script: Script) -> str:
    document = script.document
    cards = script.of_kind("scene_card")
    kind = "screenplay" if document.analysis_state else "document"
    size = f", {len(cards)} scenes" if document.analysis_state and cards else ""
    lines = [f"## {document.title} ({kind}{size}; document_id {document.id})"]
    for outline in script.of_kind("outline"):
        lines.append("Outline:")
        lines += [f"- {name}: {compact(value)}" for name, value in outline.items() if name not in _HOW_MADE]
    sheets = script.of_kind("character_sheet")
    if sheets:
        lines.append("Main characters:")
        for sheet in sheets:
            name = str(sheet.get("name", "?"))
            rest = {key: value for key, value in sheet.items() if key not in _HOW_MADE and key != "name"}
            lines.append(f"- {name}: {compact(rest)}")
    threads = script.of_kind("plot_thread")
    if threads:
        lines.append("Plot threads:")
        for thread in threads:
            listed = thread.get("scenes")
            scenes = [str(number) for number in listed] if isinstance(listed, list) else []
            shown = ", ".join(scenes[:THREAD_SCENES_SHOWN])
            if len(scenes) > THREAD_SCENES_SHOWN:
                shown += f" … {scenes[-1]}"
            thread_name, thread_kind = thread.get("name", "?"), thread.get("thread_type", "")
            lines.append(f"- {thread_name} ({thread_kind}): {len(scenes)} scenes: {shown}")
    return "\n".join(lines)


def _index(script: Script, room: int) -> tuple[str, int, int]:
    """The scene-card index within `room` tokens: (text, room left, cards left out)."""
    cards = script.of_kind("scene_card")
    if not cards:
        return "", room, 0
    header = "Scene index (scene | heading | who speaks | what happens):"
    room -= count_tokens(header) + 1
    lines: list[str] = []
    for card in cards:
        line = index_line(card)
        cost = count_tokens(line) + 1
        if cost > room:
            break
        lines.append(line)
        room -= cost
    left_out = len(cards) - len(lines)
    if not lines:
        return "", room + count_tokens(header) + 1, left_out
    if left_out:
        last = cards[len(lines) - 1].get("scene", "?")
        lines.append(f"(scenes after {last} are not listed here: list_scenes lists them)")
    return "\n".join([header, *lines]), room, left_out


def index_line(card: dict[str, object]) -> str:
    number = card.get("scene", card.get("section", "?"))
    heading = str(card.get("heading", ""))
    characters = card.get("characters") or []
    who = ", ".join(str(name) for name in characters) if isinstance(characters, list) else str(characters)
    happens = str(card.get("what_happens", card.get("summary", "")))
    return f"{number} | {heading} | {who} | {_cut(' '.join(happens.split()), INDEX_LINE_TOKENS)}"


def compact(value: object) -> str:
    """A JSON value in one line: objects as `key: value; …`, lists joined, how-made keys left out."""
    if isinstance(value, dict):
        return "; ".join(f"{key}: {compact(item)}" for key, item in value.items() if key not in _HOW_MADE)
    if isinstance(value, list):
        if all(not isinstance(item, dict | list) for item in value):
            return ", ".join(str(item) for item in value)
        return " | ".join(compact(item) for item in value)
    return " ".join(str(value).split())


def _cut(text: str, tokens: int) -> str:
    encoded = encoding().encode(text, disallowed_special=())
    if len(encoded) <= tokens:
        return text
    return encoding().decode(encoded[:tokens]).rstrip() + "…"
