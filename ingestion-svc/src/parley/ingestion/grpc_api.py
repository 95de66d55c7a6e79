"""IngestionService over gRPC: proto in, domain call, proto out. GetArtifacts is not served yet."""

from collections.abc import AsyncIterator

import grpc

from parley.ingestion.catalog import Collections
from parley.ingestion.documents import Documents, UploadHeader, UploadPart
from parley.ingestion.events import STATUS_PROTO
from parley.ingestion.store import CollectionRecord, DocumentRecord
from parley.kit.errors import InvalidInput
from parley.kit.identity import caller
from parley.kit.timestamps import to_timestamp
from parley.v1 import ingestion_pb2, ingestion_pb2_grpc


def collection_proto(record: CollectionRecord) -> ingestion_pb2.Collection:
    return ingestion_pb2.Collection(
        id=str(record.id),
        name=record.name,
        description=record.description,
        document_count=record.document_count,
        created_at=to_timestamp(record.created_at),
    )


def document_proto(record: DocumentRecord) -> ingestion_pb2.Document:
    return ingestion_pb2.Document(
        id=str(record.id),
        collection_id=str(record.collection_id),
        title=record.title,
        content_type=record.content_type,
        status=STATUS_PROTO[record.status],
        version=record.version,
        size_bytes=record.size_bytes,
        chunk_count=record.chunk_count,
        token_count=record.token_count,
        error=record.error,
        content_sha256=record.content_sha256,
        created_at=to_timestamp(record.created_at),
        updated_at=to_timestamp(record.updated_at),
    )


async def _upload_parts(requests: AsyncIterator[ingestion_pb2.IngestDocumentRequest]) -> AsyncIterator[UploadPart]:
    async for request in requests:
        part = request.WhichOneof("part")
        if part == "header":
            header = request.header
            yield UploadHeader(
                collection_id=header.collection_id,
                title=header.title,
                content_type=header.content_type,
                filename=header.filename,
            )
        elif part == "content":
            yield request.content
        else:
            raise InvalidInput("an upload message carries neither a header nor content")


class IngestionApi(ingestion_pb2_grpc.IngestionServiceServicer):
    def __init__(self, *, collections: Collections, documents: Documents) -> None:
        self._collections = collections
        self._documents = documents

    async def CreateCollection(
        self, request: ingestion_pb2.CreateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.Collection:
        created = await self._collections.create(
            tenant_id=caller(context).tenant_id, name=request.name, description=request.description
        )
        return collection_proto(created)

    async def GetCollection(
        self, request: ingestion_pb2.GetCollectionRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.Collection:
        found = await self._collections.get(tenant_id=caller(context).tenant_id, collection_id=request.collection_id)
        return collection_proto(found)

    async def ListCollections(
        self, request: ingestion_pb2.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.ListCollectionsResponse:
        page = await self._collections.list(
            tenant_id=caller(context).tenant_id, size=request.page.page_size, page_token=request.page.page_token
        )
        return ingestion_pb2.ListCollectionsResponse(
            collections=[collection_proto(record) for record in page.collections],
            next_page_token=page.next_page_token,
        )

    async def DeleteCollection(
        self, request: ingestion_pb2.DeleteCollectionRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.DeleteCollectionResponse:
        await self._collections.delete(tenant_id=caller(context).tenant_id, collection_id=request.collection_id)
        return ingestion_pb2.DeleteCollectionResponse()

    async def IngestDocument(
        self, request_iterator: AsyncIterator[ingestion_pb2.IngestDocumentRequest], context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.Document:
        document = await self._documents.ingest(
            tenant_id=caller(context).tenant_id, parts=_upload_parts(request_iterator)
        )
        return document_proto(document)

    async def GetDocument(
        self, request: ingestion_pb2.GetDocumentRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.Document:
        document = await self._documents.get(tenant_id=caller(context).tenant_id, document_id=request.document_id)
        return document_proto(document)

    async def ListDocuments(
        self, request: ingestion_pb2.ListDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.ListDocumentsResponse:
        page = await self._documents.list(
            tenant_id=caller(context).tenant_id,
            collection_id=request.collection_id,
            size=request.page.page_size,
            page_token=request.page.page_token,
        )
        return ingestion_pb2.ListDocumentsResponse(
            documents=[document_proto(record) for record in page.documents], next_page_token=page.next_page_token
        )

    async def DeleteDocument(
        self, request: ingestion_pb2.DeleteDocumentRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.DeleteDocumentResponse:
        await self._documents.delete(tenant_id=caller(context).tenant_id, document_id=request.document_id)
        return ingestion_pb2.DeleteDocumentResponse()

    async def WatchDocument(
        self, request: ingestion_pb2.WatchDocumentRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ingestion_pb2.DocumentProgress]:
        async for progress in self._documents.watch(
            tenant_id=caller(context).tenant_id, document_id=request.document_id
        ):
            yield progress

    async def GetSection(
        self, request: ingestion_pb2.GetSectionRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.Section:
        section = await self._documents.section(
            tenant_id=caller(context).tenant_id, document_id=request.document_id, ordinal=request.ordinal
        )
        return ingestion_pb2.Section(
            document_id=str(section.document_id),
            ordinal=section.ordinal,
            heading=section.heading,
            text=section.text,
            content_hash=section.content_hash,
        )
