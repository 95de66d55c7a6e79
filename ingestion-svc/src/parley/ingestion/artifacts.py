"""Artifacts — scene cards, the outline, character sheets, plot threads, the coverage report: when
they are written, how they are kept, and when they go stale. What they say is the
`ArtifactWriter`'s (artifact_writers/).

A screenplay grows through analysis states, kept on the document and never going back:

    empty ──3 scenes or 10 pages──▶ partial (scene cards) ──30 scenes or 60 pages──▶ analyzed
                                     (cards, outline, character sheets, plot threads, coverage report)

(thresholds in config.py). Other documents have no state ("") and are never ANALYZING: their
section cards and outline are written when someone asks for them (`fresh`), so a manual nobody
asks about costs nothing.

When a version becomes searchable (`after_indexing`, inside Pipeline.mark_indexed's transaction):
1. staleness is counted from the scenes changed since the version counted last
   (`documents.analysis_version`; a scene is the same when its text hash is): a card whose scene
   changed is stale, one whose scene is gone is deleted; a character sheet is stale after
   `sheet_stale_after_scenes` changed scenes its character speaks in, the outline and plot
   threads after `outline_stale_after_scenes` changed scenes, counted across versions;
2. the state is computed from the scene count and pages;
3. if the state calls for artifacts that are missing or stale, the document is ANALYZING and an
   AnalyzeJob goes to `jobs.analyze` in the same transaction; else READY.

Each AnalyzeJob writes one batch (`cards_per_job` cards, or the outline with the plot threads, or
the sheets), keeps it, and queues the next job in one transaction; the ingest worker takes its
upload queues first between jobs, so an upload waits for one batch at most. A redelivered job
recomputes what is left from the table, and every artifact is one row per (document, kind, key),
so a crash costs at most the batch in flight and never makes a duplicate.

A writer that refuses (BudgetExceeded: the tenant's budget is spent; Unavailable: the model is
down) stops the job: the document is READY (searchable, not FAILED), its message says the
artifacts are paused and why; what was written stays. Nothing retries on a timer: the next
`fresh` request or the next version picks up what is left.
"""

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from parley.ingestion import store
from parley.ingestion.artifact_writers import ArtifactDraft, ArtifactWriter, main_characters
from parley.ingestion.clients import Owner
from parley.ingestion.config import Settings
from parley.ingestion.models import AnalysisState, Status, outbox
from parley.ingestion.progress import Progress
from parley.ingestion.screenplay_reports import card_key, is_screenplay, pacing_report
from parley.ingestion.store import ArtifactRecord, DocumentRecord, SectionRecord
from parley.kit.contracts import ANALYZE_JOBS, ARTIFACT_KINDS, analyze_msg_id
from parley.kit.db import Sessions
from parley.kit.errors import BudgetExceeded, InvalidInput, NotFound, Unavailable
from parley.kit.ids import as_uuid, parse_id
from parley.kit.outbox import enqueue
from parley.v1 import events_pb2

log = logging.getLogger(__name__)

# Growth only moves forward: a script cut below a threshold keeps the artifacts it has.
_GROWTH = (AnalysisState.NONE, AnalysisState.EMPTY, AnalysisState.PARTIAL, AnalysisState.ANALYZED)


@dataclass(frozen=True, slots=True)
class Batch:
    """What one job writes: cards for `sections`, sheets for `characters`, the outline — with the
    plot threads when `threads` — or the coverage report (handed the artifacts kept before it).
    The outline and the threads both read the whole script and go stale together, so they are
    written together: a script whose writer finds no thread is not asked again and again for the
    threads it lacks."""

    kind: Literal["scene_card", "outline", "character_sheet", "coverage"]
    sections: tuple[SectionRecord, ...] = ()
    characters: tuple[str, ...] = ()
    threads: bool = False

    @property
    def size(self) -> int:
        """Artifacts it counts for in done / total (plot threads, however many, count once)."""
        return len(self.sections) or len(self.characters) or 1 + self.threads

    @property
    def words(self) -> str:
        if self.kind == "scene_card":
            return "scene cards"
        if self.kind == "character_sheet":
            return "character sheets"
        if self.kind == "coverage":
            return "the coverage report"
        return "the outline and plot threads" if self.threads else "the outline"


def carded(sections: Sequence[SectionRecord], *, screenplay: bool) -> list[SectionRecord]:
    """The sections that get a card: a screenplay's scenes, or every section of another document.
    (Scenes stored before scene keys were kept file a number used twice under its first.)"""
    if not screenplay:
        return list(sections)
    seen: set[str] = set()
    scenes: list[SectionRecord] = []
    for section in sections:
        if section.scene is not None and card_key(section) not in seen:
            seen.add(card_key(section))
            scenes.append(section)
    return scenes


def growth(sections: Sequence[SectionRecord], *, settings: Settings, before: AnalysisState) -> AnalysisState:
    report = pacing_report(sections)
    if report.scenes >= settings.analyzed_at_scenes or report.pages >= settings.analyzed_at_pages:
        reached = AnalysisState.ANALYZED
    elif report.scenes >= settings.partial_at_scenes or report.pages >= settings.partial_at_pages:
        reached = AnalysisState.PARTIAL
    else:
        reached = AnalysisState.EMPTY
    return max(reached, before, key=_GROWTH.index)


def changed_scenes(
    before: Sequence[SectionRecord], after: Sequence[SectionRecord], *, screenplay: bool
) -> dict[str, set[str]]:
    """The scenes (sections) changed between two versions, by card key, each with who speaks in
    it before or after. Text found anywhere in the other version is unchanged; the rest — edited,
    added, removed — changed."""
    old, new = carded(before, screenplay=screenplay), carded(after, screenplay=screenplay)
    changed: dict[str, set[str]] = {}
    for ours, theirs in ((new, old), (old, new)):
        left = Counter(section.content_sha256 for section in theirs)
        for section in ours:
            if left[section.content_sha256] > 0:
                left[section.content_sha256] -= 1
                continue
            speakers = changed.setdefault(card_key(section), set())
            if section.scene is not None:
                speakers.update(section.scene.characters)
    return changed


def plan(
    *,
    sections: Sequence[SectionRecord],
    held: Sequence[ArtifactRecord],
    screenplay: bool,
    state: AnalysisState,
    settings: Settings,
) -> list[Batch]:
    """What is missing or stale for the state, in the order it is written: cards, the outline
    (with the plot threads), character sheets."""
    kept = {(artifact.kind, artifact.key): artifact for artifact in held}
    batches: list[Batch] = []
    if not screenplay or state in (AnalysisState.PARTIAL, AnalysisState.ANALYZED):
        due = [
            section
            for section in carded(sections, screenplay=screenplay)
            if (card := kept.get(("scene_card", card_key(section)))) is None
            or card.stale
            or card.source_sha256 != section.content_sha256
        ]
        step = settings.cards_per_job
        batches += [Batch("scene_card", sections=tuple(due[at : at + step])) for at in range(0, len(due), step)]
    analyzed = screenplay and state == AnalysisState.ANALYZED
    if not screenplay or analyzed:
        outline = kept.get(("outline", "outline"))
        threads_stale = any(artifact.stale for artifact in held if artifact.kind == "plot_thread")
        if outline is None or outline.stale or (analyzed and threads_stale):
            batches.append(Batch("outline", threads=analyzed))
    if analyzed:
        sheets = [
            name
            for name in main_characters(sections)
            if (sheet := kept.get(("character_sheet", name))) is None or sheet.stale
        ]
        if sheets:
            batches.append(Batch("character_sheet", characters=tuple(sheets)))
        # Coverage reads the whole script, like the outline, and goes stale with it.
        if (report := kept.get(("coverage", "coverage"))) is None or report.stale:
            batches.append(Batch("coverage"))
    return batches


def size(batches: Sequence[Batch]) -> int:
    return sum(batch.size for batch in batches)


async def _ready(*, session: AsyncSession, document: DocumentRecord, paused: str = "") -> DocumentRecord | None:
    """Searchable with its analysis over or paused: READY, done = total = its chunks."""
    return await store.set_status(
        session=session,
        tenant_id=document.tenant_id,
        document_id=document.id,
        status=Status.READY,
        done=document.chunk_count,
        total=document.chunk_count,
        message=ready_message(document, paused=paused),
    )


def ready_message(document: DocumentRecord, *, paused: str = "") -> str:
    searchable = f"searchable: {document.chunk_count} chunks"
    if paused:
        return f"{searchable}; artifacts paused: {paused} (asking for them fresh, or a new version, resumes them)"
    return searchable


def _refusal(error: BudgetExceeded | Unavailable) -> str:
    return "the budget is spent" if isinstance(error, BudgetExceeded) else "the model is unavailable"


def _stuck(batch: Batch) -> str:
    # A writer whose drafts do not answer what it was asked (keys it was not given) would be
    # asked again and again: stop instead, and say so.
    return f"the writer did not write the {batch.words} asked for"


class Artifacts:
    def __init__(
        self,
        *,
        sessions: Sessions,
        progress: Progress,
        settings: Settings,
        writer: ArtifactWriter | None,
        notify_outbox: Callable[[], None],
    ) -> None:
        """`writer` None: this deployment writes no artifacts (what is stored is still served)."""
        self._sessions = sessions
        self._progress = progress
        self._settings = settings
        self._writer = writer
        self._notify_outbox = notify_outbox

    async def after_indexing(self, *, session: AsyncSession, document: DocumentRecord) -> DocumentRecord | None:
        """The version is searchable: count what its changes made stale, set the analysis state,
        and go ANALYZING with the first job queued when the state calls for something, else READY.
        In the caller's transaction, under the document's row lock, once per version."""
        tenant_id = document.tenant_id
        sections = await store.list_sections(
            session=session, tenant_id=tenant_id, document_id=document.id, version=document.version
        )
        screenplay = is_screenplay(document.content_type, sections)
        if document.analysis_version:
            before = await store.list_sections(
                session=session, tenant_id=tenant_id, document_id=document.id, version=document.analysis_version
            )
            await self._count_changes(session=session, document=document, before=before, after=sections)
        state = (
            growth(sections, settings=self._settings, before=document.analysis_state)
            if screenplay
            else AnalysisState.NONE
        )
        await store.set_analysis(
            session=session, tenant_id=tenant_id, document_id=document.id, state=state, version=document.version
        )
        batches: list[Batch] = []
        if screenplay and self._writer is not None:
            held = await store.list_artifacts(session=session, tenant_id=tenant_id, document_id=document.id)
            batches = plan(sections=sections, held=held, screenplay=True, state=state, settings=self._settings)
        if batches:
            return await self._analyzing(
                session=session, document=document, next_batch=batches[0], done=0, total=size(batches)
            )
        return await _ready(session=session, document=document)

    async def write_next(self, *, tenant_id: str, document_id: str, version: int) -> None:
        """An AnalyzeJob: write the version's next batch, keep it, queue the job after it (or
        READY when nothing is left). A job for a version no longer ANALYZING does nothing."""
        document_uuid = as_uuid(document_id)
        if document_uuid is None or self._writer is None:
            log.error("dropped an analyze job", extra={"fields": {"id": document_id, "writer": bool(self._writer)}})
            return
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            document = await store.get_document(session=session, tenant_id=tenant_id, document_id=document_uuid)
            if document is None or document.version != version or document.status != Status.ANALYZING:
                return
            batches, sections = await self._plan(session=session, document=document)
        written: list[ArtifactDraft] = []
        paused = ""
        if batches:
            try:
                written = await self._write(
                    batches[0], owner=Owner(tenant_id=tenant_id, user_id=""), document=document, sections=sections
                )
            except (BudgetExceeded, Unavailable) as refused:
                paused = _refusal(refused)
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=document_uuid, for_update=True
            )
            if document is None or document.version != version or document.status != Status.ANALYZING:
                return
            if batches and not paused:
                await self._keep(session=session, document=document, batch=batches[0], drafts=written)
            left, _ = await self._plan(session=session, document=document)
            if batches and not paused and size(left) >= size(batches):
                paused = _stuck(batches[0])
            if left and not paused:
                total = max(document.total, document.done + size(left))
                document = await self._analyzing(
                    session=session, document=document, next_batch=left[0], done=total - size(left), total=total
                )
            else:
                document = await _ready(session=session, document=document, paused=paused)
        self._notify_outbox()
        if document is not None:
            await self._progress.publish(document)

    async def give_up(self, *, tenant_id: str, document_id: str, version: int, reason: str) -> None:
        """An AnalyzeJob that kept failing was parked: the document is searchable all the same."""
        document_uuid = as_uuid(document_id)
        if document_uuid is None:
            return
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            document = await store.get_document(
                session=session, tenant_id=tenant_id, document_id=document_uuid, for_update=True
            )
            if document is None or document.version != version or document.status != Status.ANALYZING:
                return
            document = await _ready(
                session=session, document=document, paused=f"the analysis job kept failing ({reason})"
            )
        if document is not None:
            await self._progress.publish(document)

    async def get(
        self,
        *,
        tenant_id: str,
        user_id: str,
        document_id: str,
        kinds: Sequence[str],
        fresh: bool,
        api_key_id: str = "",
    ) -> list[ArtifactRecord]:
        """The document's artifacts (of `kinds`, when given): kinds in ARTIFACT_KINDS' order, cards
        in scene order. `fresh` writes what is missing or stale first, for the caller (billed to the
        tenant), when the current version is searchable; a refusal (budget, model) is raised after
        keeping what was written."""
        unknown = sorted(set(kinds) - set(ARTIFACT_KINDS))
        if unknown:
            raise InvalidInput(f"unknown artifact kinds {unknown}; known: {', '.join(ARTIFACT_KINDS)}")
        document_uuid = parse_id(document_id, kind="document")
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            document = await store.get_document(session=session, tenant_id=tenant_id, document_id=document_uuid)
        if document is None:
            raise NotFound(f"document {document_id!r} not found")
        if fresh and self._writer is not None and document.status in (Status.READY, Status.ANALYZING):
            await self._bring_up_to_date(
                document, owner=Owner(tenant_id=tenant_id, user_id=user_id, api_key_id=api_key_id)
            )
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            held = await store.list_artifacts(
                session=session, tenant_id=tenant_id, document_id=document_uuid, kinds=kinds
            )
            sections = await store.list_sections(
                session=session, tenant_id=tenant_id, document_id=document_uuid, version=document.version
            )
        place = {card_key(section): at for at, section in enumerate(sections)}
        return sorted(
            held,
            key=lambda artifact: (
                ARTIFACT_KINDS.index(artifact.kind),
                place.get(artifact.key, len(place)) if artifact.kind == "scene_card" else 0,
                artifact.key,
            ),
        )

    async def _bring_up_to_date(self, document: DocumentRecord, *, owner: Owner) -> None:
        """Every batch left for the version, one writer call and one transaction each."""
        while True:
            async with self._sessions() as session:
                await store.enter_tenant(session=session, tenant_id=document.tenant_id)
                batches, sections = await self._plan(session=session, document=document)
            if not batches:
                break
            try:
                drafts = await self._write(batches[0], owner=owner, document=document, sections=sections)
            except (BudgetExceeded, Unavailable) as refused:
                await self._pause_ready(document, why=_refusal(refused))
                raise
            async with self._sessions() as session, session.begin():
                await store.enter_tenant(session=session, tenant_id=document.tenant_id)
                current = await store.get_document(
                    session=session, tenant_id=document.tenant_id, document_id=document.id, for_update=True
                )
                if current is None or current.version != document.version:
                    return  # a newer version is on its way; its own analysis takes over
                await self._keep(session=session, document=current, batch=batches[0], drafts=drafts)
                left, _ = await self._plan(session=session, document=current)
            if size(left) >= size(batches):
                await self._pause_ready(document, why=_stuck(batches[0]))
                return
        await self._pause_ready(document, why="")

    async def _pause_ready(self, document: DocumentRecord, *, why: str) -> None:
        """A READY document's message says whether its artifacts are paused, and why."""
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=document.tenant_id)
            current = await store.get_document(
                session=session, tenant_id=document.tenant_id, document_id=document.id, for_update=True
            )
            if current is None or current.version != document.version or current.status != Status.READY:
                return
            message = ready_message(current, paused=why)
            if message == current.message:
                return
            updated = await store.set_status(
                session=session,
                tenant_id=current.tenant_id,
                document_id=current.id,
                status=Status.READY,
                done=current.done,
                total=current.total,
                message=message,
            )
        if updated is not None:
            await self._progress.publish(updated)

    async def _plan(
        self, *, session: AsyncSession, document: DocumentRecord
    ) -> tuple[list[Batch], list[SectionRecord]]:
        sections = await store.list_sections(
            session=session, tenant_id=document.tenant_id, document_id=document.id, version=document.version
        )
        held = await store.list_artifacts(session=session, tenant_id=document.tenant_id, document_id=document.id)
        batches = plan(
            sections=sections,
            held=held,
            screenplay=is_screenplay(document.content_type, sections),
            state=document.analysis_state,
            settings=self._settings,
        )
        return batches, sections

    async def _write(
        self, batch: Batch, *, owner: Owner, document: DocumentRecord, sections: Sequence[SectionRecord]
    ) -> list[ArtifactDraft]:
        if self._writer is None:
            raise AssertionError("no writer to write artifacts with")
        title = document.title
        match batch.kind:
            case "scene_card":
                return await self._writer.scene_cards(owner=owner, title=title, sections=batch.sections)
            case "outline":
                outline = await self._writer.outline(owner=owner, title=title, sections=sections)
                if not batch.threads:
                    return [outline]
                return [outline, *await self._writer.plot_threads(owner=owner, title=title, sections=sections)]
            case "character_sheet":
                return await self._writer.character_sheets(
                    owner=owner, title=title, sections=sections, characters=batch.characters
                )
            case "coverage":  # read from the script's other artifacts, kept by the batches before it
                async with self._sessions() as session:
                    await store.enter_tenant(session=session, tenant_id=document.tenant_id)
                    written = await store.list_artifacts(
                        session=session,
                        tenant_id=document.tenant_id,
                        document_id=document.id,
                        kinds=["scene_card", "outline", "character_sheet", "plot_thread"],
                    )
                return [await self._writer.coverage(owner=owner, title=title, sections=sections, artifacts=written)]

    async def _keep(
        self, *, session: AsyncSession, document: DocumentRecord, batch: Batch, drafts: Sequence[ArtifactDraft]
    ) -> None:
        for draft in drafts:
            await store.upsert_artifact(
                session=session,
                tenant_id=document.tenant_id,
                document_id=document.id,
                document_version=document.version,
                kind=draft.kind,
                key=draft.key,
                content=draft.content,
                tokens=draft.tokens,
                model=draft.model,
                source_sha256=draft.source_sha256,
            )
        if batch.threads:
            # Threads are written as a set: one the new set no longer has is gone from the story.
            written = {draft.key for draft in drafts}
            held = await store.list_artifacts(
                session=session, tenant_id=document.tenant_id, document_id=document.id, kinds=["plot_thread"]
            )
            await store.delete_artifacts(
                session=session,
                tenant_id=document.tenant_id,
                artifact_ids=[thread.id for thread in held if thread.key not in written],
            )

    async def _analyzing(
        self, *, session: AsyncSession, document: DocumentRecord, next_batch: Batch, done: int, total: int
    ) -> DocumentRecord | None:
        """ANALYZING at `done` of `total`, and the job that writes `next_batch` queued."""
        await enqueue(
            session=session,
            table=outbox,
            subject=ANALYZE_JOBS,
            msg_id=analyze_msg_id(document.id, document.version, done),
            message=events_pb2.AnalyzeJob(
                tenant_id=document.tenant_id, document_id=str(document.id), version=document.version
            ),
        )
        return await store.set_status(
            session=session,
            tenant_id=document.tenant_id,
            document_id=document.id,
            status=Status.ANALYZING,
            done=done,
            total=total,
            message=f"writing {next_batch.words} {done}/{total}",
        )

    async def _count_changes(
        self,
        *,
        session: AsyncSession,
        document: DocumentRecord,
        before: Sequence[SectionRecord],
        after: Sequence[SectionRecord],
    ) -> None:
        screenplay = is_screenplay(document.content_type, after)
        changed = changed_scenes(before, after, screenplay=screenplay)
        if not changed:
            return
        hashes = {card_key(section): section.content_sha256 for section in carded(after, screenplay=screenplay)}
        held = await store.list_artifacts(session=session, tenant_id=document.tenant_id, document_id=document.id)
        gone: list[uuid.UUID] = []
        for artifact in held:
            if artifact.kind == "scene_card":
                if artifact.key not in hashes:
                    gone.append(artifact.id)
                    continue
                count = artifact.changed_scenes + (artifact.key in changed)
                stale = artifact.stale or hashes[artifact.key] != artifact.source_sha256
            elif artifact.kind == "character_sheet":
                count = artifact.changed_scenes + sum(artifact.key in speakers for speakers in changed.values())
                stale = artifact.stale or count >= self._settings.sheet_stale_after_scenes
            else:
                count = artifact.changed_scenes + len(changed)
                stale = artifact.stale or count >= self._settings.outline_stale_after_scenes
            if (count, stale) != (artifact.changed_scenes, artifact.stale):
                await store.mark_artifact(
                    session=session,
                    tenant_id=document.tenant_id,
                    artifact_id=artifact.id,
                    changed_scenes=count,
                    stale=stale,
                )
        await store.delete_artifacts(session=session, tenant_id=document.tenant_id, artifact_ids=gone)
