"""One document: its state, its progress as SSE, its removal."""

from collections.abc import AsyncIterator

import grpc
from fastapi import APIRouter, status
from sse_starlette import EventSourceResponse

from parley.gateway.api.deps import CurrentPrincipal, Deps
from parley.gateway.errors import from_grpc
from parley.gateway.events import error_frame
from parley.gateway.schemas import Document, DocumentProgress

router = APIRouter(prefix="/v1/documents", tags=["documents"])

WATCH_SECONDS = 600.0


@router.get("/{document_id}")
async def get_document(document_id: str, who: CurrentPrincipal, services: Deps) -> Document:
    return Document.of(await services.backends.get_document(who, document_id))


@router.delete("/{document_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_document(document_id: str, who: CurrentPrincipal, services: Deps) -> None:
    await services.backends.delete_document(who, document_id)


@router.get("/{document_id}/events")
async def document_events(document_id: str, who: CurrentPrincipal, services: Deps) -> EventSourceResponse:
    """Server-sent `progress` events (queued → chunking → indexing → ready | failed)."""
    # Asking first turns another tenant's id into a 404 before the stream starts.
    await services.backends.get_document(who, document_id)

    async def progress() -> AsyncIterator[dict[str, str]]:
        try:
            async for update in services.backends.watch_document(who, document_id, timeout=WATCH_SECONDS):
                yield {"event": "progress", "data": DocumentProgress.of(update).model_dump_json()}
        except grpc.aio.AioRpcError as error:
            api_error = from_grpc(error)
            yield error_frame(api_error.code, api_error.message)

    return EventSourceResponse(progress(), ping=15)
