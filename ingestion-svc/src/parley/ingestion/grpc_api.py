"""IngestionService over gRPC: proto in, a domain call, proto out."""

from collections.abc import AsyncIterator
from typing import TypeVar

from parley.ingestion.artifacts import Artifacts
from parley.ingestion.catalog import Collections
from parley.ingestion.dead_letters import DeadLetters
from parley.ingestion.documents import Documents, UploadHeader, UploadPart, VersionHeader
from parley.ingestion.messages import artifact_proto, report_proto, to_proto
from parley.ingestion.progress import Progress
from parley.kit.errors import InvalidInput
from parley.kit.identity import caller
from parley.kit.rpc import Context
from parley.v1 import ingestion_pb2, ingestion_pb2_grpc

UploadRequest = TypeVar("UploadRequest", ingestion_pb2.IngestDocumentRequest, ingestion_pb2.UpdateDocumentRequest)


async def _upload_parts(requests: AsyncIterator[UploadRequest]) -> AsyncIterator[UploadPart]:
    async for request in requests:
        part = request.WhichOneof("part")
        if part == "header":
            header = request.header
            if isinstance(header, ingestion_pb2.DocumentHeader):
                yield UploadHeader(
                    collection_id=header.collection_id,
                    title=header.title,
                    content_type=header.content_type,
                    filename=header.filename,
                    priority=header.priority,
                )
            else:
                yield VersionHeader(
                    document_id=header.document_id,
                    content_type=header.content_type,
                    filename=header.filename,
                    priority=header.priority,
                )
        elif part == "content":
            yield request.content
        else:
            raise InvalidInput("an upload message carries neither a header nor content")


class IngestionApi(ingestion_pb2_grpc.IngestionServiceServicer):
    def __init__(
        self,
        *,
        collections: Collections,
        documents: Documents,
        progress: Progress,
        dead_letters: DeadLetters,
        artifacts: Artifacts,
    ) -> None:
        self._collections = collections
        self._documents = documents
        self._progress = progress
        self._dead_letters = dead_letters
        self._artifacts = artifacts

    async def CreateCollection(
        self, request: ingestion_pb2.CreateCollectionRequest, context: Context
    ) -> ingestion_pb2.Collection:
        created = await self._collections.create(
            tenant_id=caller(context).tenant_id, name=request.name, description=request.description
        )
        return to_proto(ingestion_pb2.Collection, created)

    async def GetCollection(
        self, request: ingestion_pb2.GetCollectionRequest, context: Context
    ) -> ingestion_pb2.Collection:
        found = await self._collections.get(tenant_id=caller(context).tenant_id, collection_id=request.collection_id)
        return to_proto(ingestion_pb2.Collection, found)

    async def ListCollections(
        self, request: ingestion_pb2.ListCollectionsRequest, context: Context
    ) -> ingestion_pb2.ListCollectionsResponse:
        page = await self._collections.list(
            tenant_id=caller(context).tenant_id, size=request.page.page_size, page_token=request.page.page_token
        )
        return ingestion_pb2.ListCollectionsResponse(
            collections=[to_proto(ingestion_pb2.Collection, record) for record in page.collections],
            next_page_token=page.next_page_token,
        )

    async def DeleteCollection(
        self, request: ingestion_pb2.DeleteCollectionRequest, context: Context
    ) -> ingestion_pb2.DeleteCollectionResponse:
        await self._collections.delete(tenant_id=caller(context).tenant_id, collection_id=request.collection_id)
        return ingestion_pb2.DeleteCollectionResponse()

    async def IngestDocument(
        self, request_iterator: AsyncIterator[ingestion_pb2.IngestDocumentRequest], context: Context
    ) -> ingestion_pb2.Document:
        document = await self._documents.ingest(
            tenant_id=caller(context).tenant_id, parts=_upload_parts(request_iterator)
        )
        return to_proto(ingestion_pb2.Document, document)

    async def UpdateDocument(
        self, request_iterator: AsyncIterator[ingestion_pb2.UpdateDocumentRequest], context: Context
    ) -> ingestion_pb2.DocumentUpdate:
        update = await self._documents.update(
            tenant_id=caller(context).tenant_id, parts=_upload_parts(request_iterator)
        )
        return to_proto(ingestion_pb2.DocumentUpdate, update)

    async def GetDocument(self, request: ingestion_pb2.GetDocumentRequest, context: Context) -> ingestion_pb2.Document:
        document = await self._documents.get(tenant_id=caller(context).tenant_id, document_id=request.document_id)
        return to_proto(ingestion_pb2.Document, document)

    async def ListDocuments(
        self, request: ingestion_pb2.ListDocumentsRequest, context: Context
    ) -> ingestion_pb2.ListDocumentsResponse:
        page = await self._documents.list(
            tenant_id=caller(context).tenant_id,
            collection_id=request.collection_id,
            size=request.page.page_size,
            page_token=request.page.page_token,
        )
        return ingestion_pb2.ListDocumentsResponse(
            documents=[to_proto(ingestion_pb2.Document, record) for record in page.documents],
            next_page_token=page.next_page_token,
        )

    async def DeleteDocument(
        self, request: ingestion_pb2.DeleteDocumentRequest, context: Context
    ) -> ingestion_pb2.DeleteDocumentResponse:
        await self._documents.delete(tenant_id=caller(context).tenant_id, document_id=request.document_id)
        return ingestion_pb2.DeleteDocumentResponse()

    async def WatchDocument(
        self, request: ingestion_pb2.WatchDocumentRequest, context: Context
    ) -> AsyncIterator[ingestion_pb2.DocumentProgress]:
        async for progress in self._progress.watch(
            tenant_id=caller(context).tenant_id, document_id=request.document_id
        ):
            yield progress

    async def GetArtifacts(
        self, request: ingestion_pb2.GetArtifactsRequest, context: Context
    ) -> ingestion_pb2.GetArtifactsResponse:
        who = caller(context)
        records = await self._artifacts.get(
            tenant_id=who.tenant_id,
            user_id=who.user_id,
            document_id=request.document_id,
            kinds=list(request.kinds),
            fresh=request.fresh,
            api_key_id=who.api_key_id,  # writing on request is billed to the key that asked
        )
        return ingestion_pb2.GetArtifactsResponse(artifacts=[artifact_proto(record) for record in records])

    async def GetSection(self, request: ingestion_pb2.GetSectionRequest, context: Context) -> ingestion_pb2.Section:
        section = await self._documents.section(
            tenant_id=caller(context).tenant_id, document_id=request.document_id, ordinal=request.ordinal
        )
        return to_proto(ingestion_pb2.Section, section)

    async def ListSections(
        self, request: ingestion_pb2.ListSectionsRequest, context: Context
    ) -> ingestion_pb2.ListSectionsResponse:
        page = await self._documents.sections(
            tenant_id=caller(context).tenant_id,
            document_id=request.document_id,
            size=request.page.page_size,
            page_token=request.page.page_token,
        )
        return ingestion_pb2.ListSectionsResponse(
            sections=[to_proto(ingestion_pb2.Section, record) for record in page.sections],
            next_page_token=page.next_page_token,
        )

    async def GetCharacters(
        self, request: ingestion_pb2.GetCharactersRequest, context: Context
    ) -> ingestion_pb2.CharactersReport:
        rows = await self._documents.characters(tenant_id=caller(context).tenant_id, document_id=request.document_id)
        return ingestion_pb2.CharactersReport(
            characters=[report_proto(ingestion_pb2.CharacterReport, row) for row in rows]
        )

    async def GetPacing(self, request: ingestion_pb2.GetPacingRequest, context: Context) -> ingestion_pb2.PacingReport:
        report = await self._documents.pacing(tenant_id=caller(context).tenant_id, document_id=request.document_id)
        return report_proto(ingestion_pb2.PacingReport, report)

    async def ListDeadLetters(
        self, request: ingestion_pb2.ListDeadLettersRequest, context: Context
    ) -> ingestion_pb2.ListDeadLettersResponse:
        records = await self._dead_letters.list(tenant_id=caller(context).tenant_id)
        return ingestion_pb2.ListDeadLettersResponse(
            dead_letters=[to_proto(ingestion_pb2.DeadLetter, record) for record in records]
        )

    async def ReplayDeadLetter(
        self, request: ingestion_pb2.ReplayDeadLetterRequest, context: Context
    ) -> ingestion_pb2.DeadLetter:
        record = await self._dead_letters.replay(tenant_id=caller(context).tenant_id, seq=request.seq)
        return to_proto(ingestion_pb2.DeadLetter, record)
