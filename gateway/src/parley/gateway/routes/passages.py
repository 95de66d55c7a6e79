"""A passage (one chunk) of a document, whole: what a citation points at. A chat source and a
search hit carry a snippet of it; this is the text the answer was given, from retrieval-svc, which
holds every chunk's text. Tenant-scoped there (row-level security): another tenant's passage, or a
passage of another document, is a 404 like any id that is not the caller's."""

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BeforeValidator

from parley.gateway.api.deps import Deps, Reader
from parley.gateway.errors import ApiError
from parley.gateway.schemas import FromProto, NoneIfEmpty
from parley.kit.contracts import MAX_ID_CHARS

router = APIRouter(prefix="/v1/documents", tags=["documents"])

IdPath = Annotated[str, Path(max_length=MAX_ID_CHARS)]


class Passage(FromProto):
    """A search hit's fields (without score and snippet), and the passage's whole `text`."""

    chunk_id: str
    document_id: str
    collection_id: str
    document_title: str
    heading: str
    ordinal: int
    text: str
    token_count: int
    # A screenplay's passages only; null elsewhere.
    scene_number: NoneIfEmpty = None
    characters: Annotated[list[str] | None, BeforeValidator(lambda names: list(names) or None)] = None
    page_start: Annotated[int | None, BeforeValidator(lambda page: page or None)] = None
    page_end: Annotated[int | None, BeforeValidator(lambda page: page or None)] = None


@router.get("/{document_id}/passages/{chunk_id}")
async def get_passage(document_id: IdPath, chunk_id: IdPath, who: Reader, services: Deps) -> Passage:
    """The passage a citation's `chunk_id` names, its whole text (a source's `snippet` is its first
    280 characters). A passage of an earlier version of the document is gone once the new one is
    indexed: `404`, as for an id that is not the caller's."""
    found = await services.backends.get_chunks(who, [chunk_id])
    chunk = next((hit for hit in found.chunks if hit.document_id == document_id), None)
    if chunk is None:
        raise ApiError(404, "not_found", f"passage {chunk_id} of document {document_id} not found")
    return Passage.model_validate(chunk)
