"""A passage (one chunk) of a document, whole: what a citation points at. A chat source and a
search hit carry a snippet of it; this is the text the answer was given, from retrieval-svc, which
holds every chunk's text. Tenant-scoped there (row-level security): another tenant's passage, or a
passage of another document, is a 404 like any id that is not the caller's."""

from fastapi import APIRouter

from parley.gateway.api.deps import Reader, Retrieval
from parley.gateway.errors import ApiError
from parley.gateway.schemas import IdPath
from parley.gateway.schemas.documents import Passage

router = APIRouter(prefix="/v1/documents", tags=["documents"])


@router.get("/{document_id}/passages/{chunk_id}")
async def get_passage(document_id: IdPath, chunk_id: IdPath, who: Reader, retrieval: Retrieval) -> Passage:
    """The passage a citation's `chunk_id` names, its whole text (a source's `snippet` is its first
    280 characters). A passage of an earlier version of the document is gone once the new one is
    indexed: `404`, as for an id that is not the caller's."""
    found = await retrieval.get_chunks(who, [chunk_id])
    chunk = next((hit for hit in found.chunks if hit.document_id == document_id), None)
    if chunk is None:
        raise ApiError(404, "not_found", f"passage {chunk_id} of document {document_id} not found")
    return Passage.of(chunk)
