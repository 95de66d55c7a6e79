"""Collections and the documents in them."""

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile, status

from parley.gateway.api.deps import Deleter, Deps, Ingestion, Reader, Writer
from parley.gateway.errors import ApiError
from parley.gateway.schemas import NO_NUL, Page, PageSize, PageToken
from parley.gateway.schemas.collections import Collection, CollectionIn
from parley.gateway.schemas.documents import PRIORITY, Document
from parley.kit.contracts import MAX_TITLE_CHARS
from parley.kit.paging import DEFAULT_PAGE_SIZE
from parley.v1 import common_pb2, ingestion_pb2

router = APIRouter(prefix="/v1/collections", tags=["collections"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_collection(body: CollectionIn, who: Writer, ingestion: Ingestion) -> Collection:
    return Collection.of(await ingestion.create_collection(who, name=body.name, description=body.description))


@router.get("")
async def list_collections(
    who: Reader, ingestion: Ingestion, page_size: PageSize = DEFAULT_PAGE_SIZE, page_token: PageToken = ""
) -> Page[Collection]:
    page = await ingestion.list_collections(who, common_pb2.PageRequest(page_size=page_size, page_token=page_token))
    return Page(data=[Collection.of(c) for c in page.collections], next_page_token=page.next_page_token or None)


@router.get("/{collection_id}")
async def get_collection(collection_id: str, who: Reader, ingestion: Ingestion) -> Collection:
    return Collection.of(await ingestion.get_collection(who, collection_id))


@router.delete("/{collection_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_collection(collection_id: str, who: Deleter, ingestion: Ingestion) -> None:
    await ingestion.delete_collection(who, collection_id)


@router.post("/{collection_id}/documents", status_code=status.HTTP_202_ACCEPTED)
async def upload_document(
    collection_id: str,
    who: Writer,
    services: Deps,
    ingestion: Ingestion,
    file: Annotated[
        UploadFile, File(description="a screenplay (.fountain, .fdx), PDF, HTML, Markdown or plain-text file")
    ],
    title: Annotated[str, Form(max_length=MAX_TITLE_CHARS, pattern=NO_NUL)] = "",
    priority: Annotated[str, Form(pattern=PRIORITY, description="urgent, normal or low")] = "normal",
) -> Document:
    """Store the document and queue it for chunking and indexing; poll it (or its events) until `ready`.
    A file ingestion cannot read (empty, binary, broken, a scan without text) is refused with 400
    and the reason, and nothing is stored."""
    limit = services.settings.max_upload_bytes
    content = await file.read(limit + 1)
    if len(content) > limit:
        raise ApiError(413, "payload_too_large", f"the file is larger than {limit} bytes")
    # Ingestion decides what the declared type and the file name make of it, in one place.
    header = ingestion_pb2.DocumentHeader(
        collection_id=collection_id,
        title=title.strip(),
        content_type=file.content_type or "",
        filename=file.filename or "",
        priority=priority,
    )
    return Document.of(await ingestion.ingest_document(who, header, content))


@router.get("/{collection_id}/documents")
async def list_documents(
    collection_id: str,
    who: Reader,
    ingestion: Ingestion,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
    page_token: PageToken = "",
) -> Page[Document]:
    page = await ingestion.list_documents(
        who, collection_id, common_pb2.PageRequest(page_size=page_size, page_token=page_token)
    )
    return Page(data=[Document.of(d) for d in page.documents], next_page_token=page.next_page_token or None)
