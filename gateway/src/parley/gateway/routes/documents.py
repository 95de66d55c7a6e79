"""One document: its state, its sections, a screenplay's reports, its artifacts, its progress as
SSE, its removal."""

from collections.abc import AsyncIterator
from typing import Annotated, Literal

import grpc
from fastapi import APIRouter, File, Query, Response, UploadFile, status
from sse_starlette import EventSourceResponse

from parley.gateway import access, breakdown
from parley.gateway.api.deps import Deleter, Deps, Ingestion, Reader, Writer
from parley.gateway.breakdown import BreakdownOut
from parley.gateway.errors import ApiError, from_grpc, responses
from parley.gateway.events import error_frame
from parley.gateway.schemas import Page, PageSize, PageToken
from parley.gateway.schemas.documents import (
    PRIORITY,
    ArtifactKind,
    ArtifactsOut,
    CharactersOut,
    Document,
    DocumentProgress,
    DocumentUpdateOut,
    PacingOut,
    SectionOut,
)
from parley.kit.contracts import ARTIFACT_KINDS
from parley.kit.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from parley.v1 import common_pb2, ingestion_pb2

router = APIRouter(prefix="/v1/documents", tags=["documents"])

WATCH_SECONDS = 600.0


@router.get("/{document_id}")
async def get_document(document_id: str, who: Reader, ingestion: Ingestion) -> Document:
    return Document.of(await ingestion.get_document(who, document_id))


@router.put(
    "/{document_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": DocumentUpdateOut, "description": "the same file again: `unchanged`, no version"}},
)
async def update_document(
    document_id: str,
    who: Writer,
    services: Deps,
    ingestion: Ingestion,
    response: Response,
    file: Annotated[UploadFile, File(description="the document's new content, in any accepted type")],
    priority: Annotated[str, Query(pattern=PRIORITY, description="urgent, normal or low")] = "normal",
) -> DocumentUpdateOut:
    """A new version under the same id (202, queued), with how its sections compare with the
    current ones; only changed sections are chunked again. The same file again is `unchanged`
    (200) and makes no version."""
    limit = services.settings.max_upload_bytes
    content = await file.read(limit + 1)
    if len(content) > limit:
        raise ApiError(413, "payload_too_large", f"the file is larger than {limit} bytes")
    header = ingestion_pb2.VersionHeader(
        document_id=document_id,
        content_type=file.content_type or "",
        filename=file.filename or "",
        priority=priority,
    )
    update = DocumentUpdateOut.of(await ingestion.update_document(who, header, content))
    if update.outcome == "unchanged":
        response.status_code = status.HTTP_200_OK
    return update


@router.get("/{document_id}/sections")
async def list_sections(
    document_id: str,
    who: Reader,
    ingestion: Ingestion,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
    page_token: PageToken = "",
) -> Page[SectionOut]:
    """The current version's sections in order (a screenplay's title page and scenes); empty
    until the document has been chunked."""
    page = await ingestion.list_sections(
        who, document_id, common_pb2.PageRequest(page_size=page_size, page_token=page_token)
    )
    return Page(data=[SectionOut.of(s) for s in page.sections], next_page_token=page.next_page_token or None)


@router.get("/{document_id}/characters")
async def get_characters(document_id: str, who: Reader, ingestion: Ingestion) -> CharactersOut:
    """A screenplay's speaking characters, counted from its scenes; 409 for any other document."""
    return CharactersOut.of(await ingestion.get_characters(who, document_id), document_id=document_id)


@router.get("/{document_id}/pacing")
async def get_pacing(document_id: str, who: Reader, ingestion: Ingestion) -> PacingOut:
    """A screenplay's pages, scene lengths in eighths, dialogue share, day/night and INT/EXT
    counts; 409 for any other document."""
    return PacingOut.of(await ingestion.get_pacing(who, document_id), document_id=document_id)


@router.get(
    "/{document_id}/breakdown",
    response_model=BreakdownOut,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "as CSV with ?format=csv"}
    },
)
async def get_breakdown(
    document_id: str,
    who: Reader,
    ingestion: Ingestion,
    format: Annotated[Literal["json", "csv"], Query(description="json (the default) or csv")] = "json",
) -> Response | BreakdownOut:
    """A screenplay's breakdown sheet, a row per scene (number, INT/EXT, location, time of day,
    eighths, start page, cast, the card's one-line synopsis); 409 for any other document."""
    # The pacing first: it is the call that refuses a document that is not a screenplay.
    pacing = await ingestion.get_pacing(who, document_id)
    sections: list[ingestion_pb2.Section] = []
    token = ""
    while True:
        page = await ingestion.list_sections(
            who, document_id, common_pb2.PageRequest(page_size=MAX_PAGE_SIZE, page_token=token)
        )
        sections += page.sections
        token = page.next_page_token
        if not token:
            break
    cards = await ingestion.get_artifacts(who, document_id, kinds=["scene_card"], fresh=False)
    found = breakdown.rows(sections, pacing, cards.artifacts)
    if format == "csv":
        disposition = f'attachment; filename="breakdown-{document_id}.csv"'
        return Response(breakdown.as_csv(found), media_type="text/csv", headers={"Content-Disposition": disposition})
    return BreakdownOut(document_id=document_id, scenes=found)


@router.get("/{document_id}/artifacts", responses=responses(402, 501))
async def get_artifacts(
    document_id: str,
    who: Reader,
    services: Deps,
    ingestion: Ingestion,
    kind: Annotated[
        list[ArtifactKind],
        Query(max_length=len(ARTIFACT_KINDS), description=f"only these: {', '.join(ARTIFACT_KINDS)}"),
    ] = [],  # noqa: B006
    fresh: Annotated[bool, Query(description="write what is missing or stale first (billed)")] = False,
) -> ArtifactsOut:
    """Scene cards (in scene order), the outline, character sheets and plot threads, each with its
    token count, model, the version it was made from and whether it is stale. `fresh=true` writes
    what is missing or stale before answering: 402 when the budget is spent (what was written
    stays), 503 when the model is down. An unknown kind is a 422."""
    if fresh and not who.may(access.SPEND):
        raise ApiError(403, "forbidden", "writing artifacts is billed: it needs a member with a `chat` key")
    if fresh:
        await services.budgets.before_spending(services, who)
    found = await ingestion.get_artifacts(who, document_id, kinds=list(kind), fresh=fresh)
    return ArtifactsOut.of(found, document_id=document_id)


@router.delete("/{document_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_document(document_id: str, who: Deleter, ingestion: Ingestion) -> None:
    await ingestion.delete_document(who, document_id)


@router.get(
    "/{document_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "server-sent `progress` events until the document is ready or failed",
            "content": {
                "text/event-stream": {
                    "schema": {
                        "type": "string",
                        "description": "`event: progress` data `{status, version, chunk_count, done, total, "
                        "message, failed_stage, error}`; `event: error` data `{code, message}`",
                    }
                }
            },
        }
    },
)
async def document_events(document_id: str, who: Reader, ingestion: Ingestion) -> EventSourceResponse:
    """Server-sent `progress` events (queued → parsing → chunking → indexing → [analyzing, one
    event per batch of artifacts] → ready | failed)."""
    # Asking first turns another tenant's id into a 404 before the stream starts.
    await ingestion.get_document(who, document_id)

    async def progress() -> AsyncIterator[dict[str, str]]:
        try:
            async for update in ingestion.watch_document(who, document_id, timeout=WATCH_SECONDS):
                yield {"event": "progress", "data": DocumentProgress.of(update).model_dump_json()}
        except grpc.aio.AioRpcError as error:
            api_error = from_grpc(error)
            yield error_frame(api_error.code, api_error.message)

    return EventSourceResponse(progress(), ping=15)
