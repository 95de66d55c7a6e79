"""`ModelWriter`: artifacts written by the configured model through chat-svc's `Complete` (billed as
`summary`), as JSON of a fixed shape per kind (prompts.py) validated by the answers (answers.py).
One retry on an unusable answer, told why, then the extractive artifact for that item, saying so
(`fallback`). Cards go several scenes to a completion (`CARD_BATCH_SCENES`, `CARD_BATCH_TOKENS`):
the instructions are then paid for once per batch rather than once per scene, and a 120-page
script takes ~20 calls instead of ~150. Counted facts are copied in, never asked of the model.
"""

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

from pydantic import ValidationError

from parley.ingestion.artifact_writers.answers import (
    Answer,
    AnswerT,
    CardsAnswer,
    CharacterSheetAnswer,
    CoverageCharacterAnswer,
    DocumentOutlineAnswer,
    PlotThreadsAnswer,
    RelationshipAnswer,
    SceneCardAnswer,
    ScreenplayOutlineAnswer,
    SectionCardAnswer,
    Unusable,
    problems_of,
    read_answer,
    read_coverage,
    reader,
    scene_number,
)
from parley.ingestion.artifact_writers.coverage import extracted_coverage
from parley.ingestion.artifact_writers.drafts import (
    CARD_BATCH_SCENES,
    CARD_BATCH_TOKENS,
    CONCURRENT_COMPLETIONS,
    COVERAGE_CRITERIA,
    SECTION_PROMPT_TOKENS,
    ArtifactDraft,
    main_characters,
)
from parley.ingestion.artifact_writers.extractive import (
    carded,
    extract_cards,
    extract_sheets,
    extract_threads,
    extracted_draft,
    extracted_outline,
    unique_keys,
)
from parley.ingestion.artifact_writers.prompts import (
    CARD_MAX_TOKENS,
    COVERAGE_MAX_TOKENS,
    OUTLINE_MAX_TOKENS,
    RETRY,
    SHEET_MAX_TOKENS,
    SYSTEM,
    THREADS_MAX_TOKENS,
    cards_prompt,
    coverage_prompt,
    outline_prompt,
    sheet_prompt,
    threads_prompt,
)
from parley.ingestion.artifact_writers.reading import (
    Content,
    json_tokens,
    scene_facts,
    scene_parts,
    section_facts,
)
from parley.ingestion.clients import Completer, Completion, Owner
from parley.ingestion.screenplay import normalise_cue
from parley.ingestion.screenplay_reports import card_key, characters_report
from parley.ingestion.store import ArtifactRecord, SectionRecord
from parley.kit.contracts import MAX_ID_CHARS

log = logging.getLogger(__name__)
T = TypeVar("T")


FALLBACK_NOTE = "the model's answers could not be used, twice; extracted from the text instead"


def _fallback(draft: ArtifactDraft, *, reason: str = "") -> ArtifactDraft:
    """The extracted draft instead of the model's, saying so (and, when known, what was wrong with
    the model's last answer)."""
    content = dict(draft.content) | {"fallback": FALLBACK_NOTE} | ({"fallback_reason": reason} if reason else {})
    return replace(draft, content=content, tokens=json_tokens(content))


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
                owner=owner, system=SYSTEM, prompt=prompt, max_tokens=max_tokens, request_id=request_id
            )

    async def _ask(
        self, *, owner: Owner, prompt: str, max_tokens: int, request_id: str, read: Callable[[str], AnswerT]
    ) -> tuple[AnswerT, Completion]:
        """The model's answer, asked a second time (told why) when the first cannot be used; after two,
        `Unusable` (why the second could not be used)."""
        asked = prompt
        for attempt in (1, 2):
            completion = await self._complete(
                owner=owner, prompt=asked, max_tokens=max_tokens, request_id=f"{request_id}:{attempt}"
            )
            try:
                return read(completion.text), completion
            except Unusable as problem:
                log.warning("unusable artifact answer for %s (attempt %d): %s", request_id, attempt, problem)
                if attempt == 2:
                    raise
                asked = f"{prompt}\n\n{RETRY.format(problem=problem)}"
        raise AssertionError("unreachable: the second attempt returns or raises")

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
            prompt = await asyncio.to_thread(cards_prompt, pending)
            if problem:
                prompt += f"\n\n{RETRY.format(problem=problem)}"
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
        return [
            written.get(card_key(section)) or _fallback(extract_cards([section])[0], reason=problem)
            for section in batch
        ]

    async def outline(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> ArtifactDraft:
        facts = await asyncio.to_thread(extracted_outline, title, sections)
        prompt = await asyncio.to_thread(outline_prompt, title, sections, facts)
        parts = scene_parts(sections)
        answer_type: type[Answer] = ScreenplayOutlineAnswer if parts else DocumentOutlineAnswer
        scenes = frozenset(scene.number for _, scene in parts)
        try:
            answer, completion = await self._ask(
                owner=owner,
                prompt=prompt,
                max_tokens=OUTLINE_MAX_TOKENS,
                request_id=_request_id(sections, "outline", "outline"),
                read=reader(answer_type, scenes),
            )
        except Unusable as problem:
            return _fallback(extracted_draft("outline", "outline", facts), reason=str(problem))
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
        facts = await asyncio.to_thread(extract_sheets, sections, characters)
        return await _all([self._sheet(owner, title, sections, draft) for draft in facts])

    async def _sheet(
        self, owner: Owner, title: str, sections: Sequence[SectionRecord], facts: ArtifactDraft
    ) -> ArtifactDraft:
        name = facts.key
        parts = scene_parts(sections)
        prompt = await asyncio.to_thread(sheet_prompt, title, name, parts, facts.content)
        try:
            answer, completion = await self._ask(
                owner=owner,
                prompt=prompt,
                max_tokens=SHEET_MAX_TOKENS,
                request_id=_request_id(sections, "character_sheet", name),
                read=reader(CharacterSheetAnswer, frozenset(scene.number for _, scene in parts)),
            )
        except Unusable as problem:
            return _fallback(facts, reason=str(problem))
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
        parts = scene_parts(sections)
        if not parts:
            return []
        facts = await asyncio.to_thread(extract_threads, title, sections)
        prompt = await asyncio.to_thread(threads_prompt, title, parts, main_characters(sections), facts)
        try:
            answer, completion = await self._ask(
                owner=owner,
                prompt=prompt,
                max_tokens=THREADS_MAX_TOKENS,
                request_id=_request_id(sections, "plot_thread", "threads"),
                read=reader(PlotThreadsAnswer, frozenset(scene.number for _, scene in parts)),
            )
        except Unusable as problem:
            return [_fallback(draft, reason=str(problem)) for draft in facts]
        contents: list[Content] = [{"method": "model", **thread.model_dump()} for thread in answer.threads]
        keys = unique_keys([thread.name for thread in answer.threads])
        tokens = _shares(completion.output_tokens, [json_tokens(content) for content in contents])
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

    async def coverage(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord], artifacts: Sequence[ArtifactRecord]
    ) -> ArtifactDraft:
        """The coverage report written by the model from what the script's other artifacts say
        (prompts.coverage_prompt), its scores checked (answers.read_coverage), the counted facts
        copied in; extracted instead, saying why, when the model's answers cannot be used."""
        facts = await asyncio.to_thread(extracted_coverage, title, sections)
        parts = scene_parts(sections)
        if not parts:
            return facts  # no scenes to judge or cite: what is counted is all there is
        prompt = await asyncio.to_thread(coverage_prompt, title, parts, facts.content, artifacts)
        scenes = frozenset(scene.number for _, scene in parts)
        try:
            answer, completion = await self._ask(
                owner=owner,
                prompt=prompt,
                max_tokens=COVERAGE_MAX_TOKENS,
                request_id=_request_id(sections, "coverage", "coverage"),
                read=lambda text: read_coverage(text, scenes, COVERAGE_CRITERIA),
            )
        except Unusable as problem:
            return _fallback(facts, reason=str(problem))
        counted = _counted_characters(sections)
        content: Content = {
            "method": "model",
            **{name: facts.content[name] for name in ("title", "pages", "scenes")},
            "logline": answer.logline,
            "synopsis": answer.synopsis,
            "character_breakdown": [_character(character, counted) for character in answer.character_breakdown],
            "scores": [score.model_dump() for score in answer.scores],
            "strengths": answer.strengths,
            "weaknesses": answer.weaknesses,
        }
        return ArtifactDraft(
            kind="coverage",
            key="coverage",
            content=content,
            tokens=completion.output_tokens,
            model=_model_of(completion),
            source_sha256="",
        )


def _counted_characters(sections: Sequence[SectionRecord]) -> dict[str, Content]:
    """Who speaks in the script, by cue, counted: name, scenes, first and last scene."""
    return {
        row.name: {"name": row.name, "scenes": row.scenes, "first_scene": row.first_scene, "last_scene": row.last_scene}
        for row in characters_report(sections)
    }


def _character(character: CoverageCharacterAnswer, counted: Mapping[str, Content]) -> Content:
    """A character the model describes, under their cue and with their counted scenes when they
    speak in the script; as the model wrote them otherwise."""
    cue = normalise_cue(character.name)
    facts = counted.get(cue)
    if facts is None:
        return {"name": character.name, "role": character.role, "description": character.description}
    return {**facts, "role": character.role, "description": character.description}


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
        envelope = read_answer(CardsAnswer, text, frozenset())
    except Unusable as problem:
        return {}, str(problem)
    by_key = {card_key(section): section for section in sections}
    cards: dict[str, SceneCardAnswer | SectionCardAnswer] = {}
    problems: list[str] = []
    for item in envelope.cards:
        key = scene_number(str(item.get("key", "")))
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
            problems.append(f"card {key!r}: {problems_of(error)}")
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
        facts = scene_facts(section.scene) if section.scene is not None else section_facts(section)
        contents.append({"method": "model", **facts, **cards[card_key(section)].model_dump(exclude={"key"})})
    shares = _shares(completion.output_tokens, [json_tokens(content) for content in contents])
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
