"""Ingestion through its real gRPC server, on real PostgreSQL and NATS: upload, chunking by the
worker, the events retrieval relies on, readiness, tenancy, refusals and deletion."""

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Iterable
from typing import TypeVar

import grpc
import pytest
from google.protobuf.message import Message
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from parley.kit.identity import Identity
from parley.kit.testing import signed
from parley.v1 import common_pb2, events_pb2, ingestion_pb2, ingestion_pb2_grpc

Stub = ingestion_pb2_grpc.IngestionServiceStub
EventT = TypeVar("EventT", bound=Message)

GUIDE = """# Parley Guide

Parley answers questions about your documents.

## Setup

You need PostgreSQL and NATS. Both start by themselves in development.

### Installing

Run `make run` and wait for the services to report healthy.

## Usage

Upload a Markdown file, then ask about it. Answers cite the passages they came from: “naïve” café.
"""

MAX_POLLS = 100


def who(tenant_id: str) -> tuple[tuple[str, str], ...]:
    return signed(Identity(tenant_id=tenant_id, user_id="user-1", request_id=str(uuid.uuid4())))


def upload(
    collection_id: str,
    pieces: Iterable[bytes],
    *,
    title: str = "",
    content_type: str = "text/markdown",
    filename: str = "guide.md",
) -> list[ingestion_pb2.IngestDocumentRequest]:
    header = ingestion_pb2.DocumentHeader(
        collection_id=collection_id, title=title, content_type=content_type, filename=filename
    )
    return [
        ingestion_pb2.IngestDocumentRequest(header=header),
        *(ingestion_pb2.IngestDocumentRequest(content=piece) for piece in pieces),
    ]


def in_pieces(data: bytes, size: int) -> list[bytes]:
    # Cuts fall inside multi-byte characters too: the service must join bytes before decoding.
    return [data[start : start + size] for start in range(0, len(data), size)]


async def new_collection(stub: Stub, tenant_id: str, name: str = "Manuals") -> ingestion_pb2.Collection:
    return await stub.CreateCollection(
        ingestion_pb2.CreateCollectionRequest(name=name, description="how-tos"), metadata=who(tenant_id)
    )


async def wait_for_status(
    stub: Stub, tenant_id: str, document_id: str, status: ingestion_pb2.DocumentStatus
) -> ingestion_pb2.Document:
    for _ in range(MAX_POLLS):
        document = await stub.GetDocument(
            ingestion_pb2.GetDocumentRequest(document_id=document_id), metadata=who(tenant_id)
        )
        if document.status == status:
            return document
        await asyncio.sleep(0.1)
    raise AssertionError(f"document stayed {ingestion_pb2.DocumentStatus.Name(document.status)}")


async def wait_for_event(
    js: JetStreamContext, subject: str, parse: Callable[[bytes], EventT], match: Callable[[EventT], bool]
) -> EventT:
    """The first event on `subject`, from the start of the DOCS stream, that `match`es."""
    subscription = await js.pull_subscribe(subject, stream="DOCS")
    try:
        for _ in range(MAX_POLLS):
            try:
                messages = await subscription.fetch(50, timeout=0.2)
            except TimeoutError:  # nats-py raises its own or a bare one when nothing came
                continue
            for message in messages:
                await message.ack()
                event = parse(message.data)
                if match(event):
                    return event
    finally:
        await subscription.unsubscribe()
    raise AssertionError(f"no matching event on {subject}")


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_a_markdown_upload_is_chunked_announced_and_made_ready(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str
) -> None:
    collection = await new_collection(ingestion, tenant_id)

    document = await ingestion.IngestDocument(
        iter(upload(collection.id, in_pieces(GUIDE.encode(), 7), content_type="")), metadata=who(tenant_id)
    )

    assert document.title == "Parley Guide"
    assert document.content_type == "text/markdown"
    assert document.status == ingestion_pb2.DOCUMENT_STATUS_QUEUED
    assert document.size_bytes == len(GUIDE.encode())
    assert document.version == 1

    upserted = await wait_for_event(
        nats_client.jetstream(),
        "docs.chunks.upserted",
        events_pb2.ChunksUpserted.FromString,
        lambda event: event.document_id == document.id,
    )
    assert (upserted.tenant_id, upserted.collection_id, upserted.version) == (tenant_id, collection.id, 1)
    assert upserted.document_title == "Parley Guide"
    assert [chunk.heading for chunk in upserted.chunks] == [
        "Parley Guide",
        "Parley Guide › Setup",
        "Parley Guide › Setup › Installing",
        "Parley Guide › Usage",
    ]
    assert "“naïve” café" in upserted.chunks[-1].text
    assert len({chunk.chunk_id for chunk in upserted.chunks}) == len(upserted.chunks)
    # One section per heading (each small enough to be one chunk here), stored with the chunks.
    listed = await ingestion.ListSections(
        ingestion_pb2.ListSectionsRequest(document_id=document.id, page=common_pb2.PageRequest(page_size=3)),
        metadata=who(tenant_id),
    )
    rest = await ingestion.ListSections(
        ingestion_pb2.ListSectionsRequest(
            document_id=document.id, page=common_pb2.PageRequest(page_token=listed.next_page_token)
        ),
        metadata=who(tenant_id),
    )
    sections = [*listed.sections, *rest.sections]
    assert [" › ".join(section.heading_path) for section in sections] == [c.heading for c in upserted.chunks]
    assert [section.ordinal for section in sections] == [0, 1, 2, 3] and not rest.next_page_token
    assert all(section.kind == "heading" and not section.HasField("scene") for section in sections)
    section = await ingestion.GetSection(
        ingestion_pb2.GetSectionRequest(document_id=document.id, ordinal=3), metadata=who(tenant_id)
    )
    assert (section.heading, section.text) == ("Usage", upserted.chunks[3].text)
    assert section.content_sha256 == hashlib.sha256(section.text.encode()).hexdigest()

    indexing = await wait_for_status(ingestion, tenant_id, document.id, ingestion_pb2.DOCUMENT_STATUS_INDEXING)
    assert indexing.chunk_count == len(upserted.chunks)
    assert indexing.token_count == sum(chunk.token_count for chunk in upserted.chunks)

    await nats_client.jetstream().publish(
        "docs.chunks.indexed",
        events_pb2.ChunksIndexed(
            tenant_id=tenant_id, document_id=document.id, version=1, chunk_count=len(upserted.chunks)
        ).SerializeToString(),
        headers={"Nats-Msg-Id": f"indexed:{document.id}:1"},
    )

    ready = await wait_for_status(ingestion, tenant_id, document.id, ingestion_pb2.DOCUMENT_STATUS_READY)
    assert ready.error == ""
    listed = await ingestion.ListDocuments(
        ingestion_pb2.ListDocumentsRequest(collection_id=collection.id), metadata=who(tenant_id)
    )
    assert [(item.id, item.status) for item in listed.documents] == [(document.id, ingestion_pb2.DOCUMENT_STATUS_READY)]
    fetched = await ingestion.GetCollection(
        ingestion_pb2.GetCollectionRequest(collection_id=collection.id), metadata=who(tenant_id)
    )
    assert fetched.document_count == 1


async def test_a_version_retrieval_gave_up_on_ends_failed_with_the_reason(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str
) -> None:
    collection = await new_collection(ingestion, tenant_id)
    document = await ingestion.IngestDocument(
        iter(upload(collection.id, [GUIDE.encode()], content_type="")), metadata=who(tenant_id)
    )
    await wait_for_status(ingestion, tenant_id, document.id, ingestion_pb2.DOCUMENT_STATUS_INDEXING)

    # What retrieval says when it parks the version's upsert after its retries.
    reason = "OperationalError: number of parameters must be between 0 and 65535"
    await nats_client.jetstream().publish(
        "docs.chunks.indexed",
        events_pb2.ChunksIndexed(
            tenant_id=tenant_id, document_id=document.id, version=1, error=reason
        ).SerializeToString(),
        headers={"Nats-Msg-Id": f"index-failed:{document.id}:1"},
    )

    failed = await wait_for_status(ingestion, tenant_id, document.id, ingestion_pb2.DOCUMENT_STATUS_FAILED)
    assert failed.failed_stage == "indexing"
    assert failed.error == f"indexing it in retrieval kept failing and was set aside for an operator: {reason}"


def version_of(
    document_id: str, pieces: Iterable[bytes], *, filename: str = ""
) -> list[ingestion_pb2.UpdateDocumentRequest]:
    header = ingestion_pb2.VersionHeader(document_id=document_id, filename=filename)
    return [
        ingestion_pb2.UpdateDocumentRequest(header=header),
        *(ingestion_pb2.UpdateDocumentRequest(content=piece) for piece in pieces),
    ]


async def test_a_new_version_keeps_the_id_and_rechunks_only_changed_sections(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str
) -> None:
    collection = await new_collection(ingestion, tenant_id)
    document = await ingestion.IngestDocument(iter(upload(collection.id, [GUIDE.encode()])), metadata=who(tenant_id))
    first = await wait_for_event(
        nats_client.jetstream(),
        "docs.chunks.upserted",
        events_pb2.ChunksUpserted.FromString,
        lambda event: event.document_id == document.id and event.version == 1,
    )
    await wait_for_status(ingestion, tenant_id, document.id, ingestion_pb2.DOCUMENT_STATUS_INDEXING)
    # Installing's text changes, Usage goes, a new section comes; the rest stays word for word.
    edited = GUIDE.replace("wait for the services", "wait for every service").split("## Usage")[0]
    edited += "## Troubleshooting\n\nRead the logs first.\n"

    update = await ingestion.UpdateDocument(iter(version_of(document.id, [edited.encode()])), metadata=who(tenant_id))

    assert update.outcome == "new_version"
    assert (update.document.id, update.document.version) == (document.id, 2)
    assert update.document.status == ingestion_pb2.DOCUMENT_STATUS_QUEUED
    assert (update.sections.added, update.sections.changed, update.sections.removed, update.sections.unchanged) == (
        1,
        1,
        1,
        2,
    )
    second = await wait_for_event(
        nats_client.jetstream(),
        "docs.chunks.upserted",
        events_pb2.ChunksUpserted.FromString,
        lambda event: event.document_id == document.id and event.version == 2,
    )
    ids_before = {chunk.heading: chunk.chunk_id for chunk in first.chunks}
    ids_after = {chunk.heading: chunk.chunk_id for chunk in second.chunks}
    kept = {heading for heading in ids_after if ids_after[heading] == ids_before.get(heading)}
    assert kept == {"Parley Guide", "Parley Guide › Setup"}
    assert set(ids_after) - set(ids_before) == {"Parley Guide › Troubleshooting"}

    again = await ingestion.UpdateDocument(iter(version_of(document.id, [edited.encode()])), metadata=who(tenant_id))
    assert (again.outcome, again.document.version) == ("unchanged", 2)
    assert again.sections.unchanged == 4 and again.sections.added == again.sections.changed == 0

    stranger = who(f"other-{uuid.uuid4()}")
    assert await code_of(ingestion.UpdateDocument(iter(version_of(document.id, [b"# Mine"])), metadata=stranger)) == (
        grpc.StatusCode.NOT_FOUND
    )
    broken = version_of(document.id, [b"\x89PNG\r\n\x1a\n\x00\x00"], filename="x.png")
    assert await code_of(ingestion.UpdateDocument(iter(broken), metadata=who(tenant_id))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    fetched = await ingestion.GetDocument(
        ingestion_pb2.GetDocumentRequest(document_id=document.id), metadata=who(tenant_id)
    )
    assert fetched.version == 2


async def test_watching_a_document_follows_it_to_ready(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str
) -> None:
    collection = await new_collection(ingestion, tenant_id)
    document = await ingestion.IngestDocument(
        iter(upload(collection.id, [b"Plain words to index."], content_type="text/plain", filename="words.txt")),
        metadata=who(tenant_id),
    )
    seen: list[ingestion_pb2.DocumentStatus] = []

    async for progress in ingestion.WatchDocument(
        ingestion_pb2.WatchDocumentRequest(document_id=document.id), metadata=who(tenant_id), timeout=30
    ):
        assert (progress.document_id, progress.collection_id) == (document.id, collection.id)
        seen.append(progress.status)
        if progress.status == ingestion_pb2.DOCUMENT_STATUS_INDEXING:
            await nats_client.jetstream().publish(
                "docs.chunks.indexed",
                events_pb2.ChunksIndexed(tenant_id=tenant_id, document_id=document.id, version=1).SerializeToString(),
                headers={"Nats-Msg-Id": f"indexed:{document.id}:1"},
            )

    # Each step once and in order, from QUEUED: by the time the watcher connects the worker has
    # usually moved on, and the watcher is told the steps it missed.
    every_step = [
        ingestion_pb2.DOCUMENT_STATUS_QUEUED,
        ingestion_pb2.DOCUMENT_STATUS_PARSING,
        ingestion_pb2.DOCUMENT_STATUS_CHUNKING,
        ingestion_pb2.DOCUMENT_STATUS_INDEXING,
        ingestion_pb2.DOCUMENT_STATUS_READY,
    ]
    assert seen == every_step

    # Watching it again later tells the same story and ends.
    again = [
        progress
        async for progress in ingestion.WatchDocument(
            ingestion_pb2.WatchDocumentRequest(document_id=document.id), metadata=who(tenant_id), timeout=10
        )
    ]
    assert [progress.status for progress in again] == every_step
    assert {progress.version for progress in again} == {1}
    # Each step says how far it is and what it does: one section of one chunk, then searchable.
    chunking, indexing, ready = again[2], again[3], again[4]
    assert (chunking.total, chunking.message) == (1, "splitting 1 sections into chunks")
    assert (indexing.total, indexing.message) == (1, "retrieval is indexing 1 chunks")
    assert (ready.done, ready.total, ready.message) == (1, 1, "searchable: 1 chunks")
    assert "normal priority" in again[0].message
    assert again[-1].chunk_count == 1
    assert document.title == "Words"  # the upload's name, tidied


async def test_a_watcher_falls_back_on_the_stored_state_when_the_stream_forgot(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str
) -> None:
    collection = await new_collection(ingestion, tenant_id)
    document = await ingestion.IngestDocument(
        iter(upload(collection.id, [b"Words kept for an hour."], content_type="text/plain", filename="w.txt")),
        metadata=who(tenant_id),
    )
    await wait_for_status(ingestion, tenant_id, document.id, ingestion_pb2.DOCUMENT_STATUS_INDEXING)
    # What an hour in PROGRESS (or a progress publish that failed) leaves: nothing.
    js = nats_client.jetstream()
    await js.purge_stream("PROGRESS", subject=f"progress.document.{document.id}")

    seen: list[ingestion_pb2.DocumentStatus] = []
    async for progress in ingestion.WatchDocument(
        ingestion_pb2.WatchDocumentRequest(document_id=document.id), metadata=who(tenant_id), timeout=30
    ):
        seen.append(progress.status)
        if progress.status == ingestion_pb2.DOCUMENT_STATUS_INDEXING:
            await js.publish(
                "docs.chunks.indexed",
                events_pb2.ChunksIndexed(tenant_id=tenant_id, document_id=document.id, version=1).SerializeToString(),
                headers={"Nats-Msg-Id": f"indexed:{document.id}:1"},
            )

    assert seen == [ingestion_pb2.DOCUMENT_STATUS_INDEXING, ingestion_pb2.DOCUMENT_STATUS_READY]


async def test_the_same_content_and_title_is_one_document(ingestion: Stub, tenant_id: str) -> None:
    collection = await new_collection(ingestion, tenant_id)

    first = await ingestion.IngestDocument(iter(upload(collection.id, [GUIDE.encode()])), metadata=who(tenant_id))
    again = await ingestion.IngestDocument(
        iter(upload(collection.id, in_pieces(GUIDE.encode(), 100))), metadata=who(tenant_id)
    )
    retitled = await ingestion.IngestDocument(
        iter(upload(collection.id, [GUIDE.encode()], title="Another title")), metadata=who(tenant_id)
    )

    assert again.id == first.id
    assert retitled.id != first.id
    listed = await ingestion.ListDocuments(
        ingestion_pb2.ListDocumentsRequest(collection_id=collection.id), metadata=who(tenant_id)
    )
    assert len(listed.documents) == 2


async def test_another_tenant_finds_nothing(ingestion: Stub, tenant_id: str) -> None:
    collection = await new_collection(ingestion, tenant_id)
    document = await ingestion.IngestDocument(iter(upload(collection.id, [GUIDE.encode()])), metadata=who(tenant_id))
    stranger = who(str(uuid.uuid4()))

    calls = [
        ingestion.GetCollection(ingestion_pb2.GetCollectionRequest(collection_id=collection.id), metadata=stranger),
        ingestion.DeleteCollection(
            ingestion_pb2.DeleteCollectionRequest(collection_id=collection.id), metadata=stranger
        ),
        ingestion.ListDocuments(ingestion_pb2.ListDocumentsRequest(collection_id=collection.id), metadata=stranger),
        ingestion.IngestDocument(iter(upload(collection.id, [b"# Mine now"])), metadata=stranger),
        ingestion.GetDocument(ingestion_pb2.GetDocumentRequest(document_id=document.id), metadata=stranger),
        ingestion.DeleteDocument(ingestion_pb2.DeleteDocumentRequest(document_id=document.id), metadata=stranger),
        ingestion.GetSection(ingestion_pb2.GetSectionRequest(document_id=document.id), metadata=stranger),
    ]
    assert [await code_of(call) for call in calls] == [grpc.StatusCode.NOT_FOUND] * len(calls)

    watch = ingestion.WatchDocument(ingestion_pb2.WatchDocumentRequest(document_id=document.id), metadata=stranger)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in watch:
            pass
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND

    # Still there for its owner.
    assert (
        await code_of(
            ingestion.GetDocument(ingestion_pb2.GetDocumentRequest(document_id=document.id), metadata=who(tenant_id))
        )
        == grpc.StatusCode.OK
    )


async def test_ids_that_are_not_uuids_are_not_found(ingestion: Stub, tenant_id: str) -> None:
    calls = [
        ingestion.GetCollection(ingestion_pb2.GetCollectionRequest(collection_id="nope"), metadata=who(tenant_id)),
        ingestion.GetDocument(ingestion_pb2.GetDocumentRequest(document_id="../etc"), metadata=who(tenant_id)),
        ingestion.IngestDocument(iter(upload("", [b"text"])), metadata=who(tenant_id)),
    ]
    assert [await code_of(call) for call in calls] == [grpc.StatusCode.NOT_FOUND] * len(calls)


@pytest.mark.parametrize(
    ("case", "build"),
    [
        ("broken pdf", lambda cid: upload(cid, [b"%PDF-1.7"], content_type="application/pdf", filename="a.pdf")),
        ("unsupported type", lambda cid: upload(cid, [b"hello"], content_type="image/png", filename="a.png")),
        ("binary", lambda cid: upload(cid, [b"PK\x03\x04\x14\x00\x00\x00"], content_type="", filename="a.docx")),
        ("nul bytes", lambda cid: upload(cid, [b"hello\x00world"])),
        ("invalid utf-8", lambda cid: upload(cid, [b"caf\xe9 au lait"])),
        ("empty", lambda cid: upload(cid, [])),
        ("whitespace only", lambda cid: upload(cid, [b"  \n\n\t "])),
        ("title too long", lambda cid: upload(cid, [b"text"], title="t" * 301)),
        ("NUL in the title", lambda cid: upload(cid, [b"text"], title="a\x00b")),
        ("oversize", lambda cid: upload(cid, [b"a" * 16 * 1024] * 5)),  # 80 KiB; the test limit is 64 KiB
        ("missing header", lambda cid: upload(cid, [b"text"])[1:]),
        ("no messages", lambda cid: []),
        ("second header", lambda cid: [*upload(cid, [b"text"]), *upload(cid, [])]),
    ],
)
async def test_bad_uploads_are_refused_and_store_nothing(
    ingestion: Stub, tenant_id: str, case: str, build: Callable[[str], list[ingestion_pb2.IngestDocumentRequest]]
) -> None:
    collection = await new_collection(ingestion, tenant_id)

    code = await code_of(ingestion.IngestDocument(iter(build(collection.id)), metadata=who(tenant_id)))

    assert code == grpc.StatusCode.INVALID_ARGUMENT, case
    listed = await ingestion.ListDocuments(
        ingestion_pb2.ListDocumentsRequest(collection_id=collection.id), metadata=who(tenant_id)
    )
    assert list(listed.documents) == []


async def test_collections_are_named_unique_and_paged(ingestion: Stub, tenant_id: str) -> None:
    names = [f"Collection {n}" for n in range(5)]
    for name in names:
        await new_collection(ingestion, tenant_id, name)

    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = await ingestion.ListCollections(
            ingestion_pb2.ListCollectionsRequest(page=common_pb2.PageRequest(page_size=2, page_token=token)),
            metadata=who(tenant_id),
        )
        assert len(page.collections) <= 2
        seen += [collection.name for collection in page.collections]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == names

    refusals = [
        (ingestion_pb2.CreateCollectionRequest(name="Collection 0"), grpc.StatusCode.ALREADY_EXISTS),
        (ingestion_pb2.CreateCollectionRequest(name="   "), grpc.StatusCode.INVALID_ARGUMENT),
        (ingestion_pb2.CreateCollectionRequest(name="n" * 201), grpc.StatusCode.INVALID_ARGUMENT),
        (ingestion_pb2.CreateCollectionRequest(name="x\x00y"), grpc.StatusCode.INVALID_ARGUMENT),
        (ingestion_pb2.CreateCollectionRequest(name="ok", description="a\x00"), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for request, expected in refusals:
        assert await code_of(ingestion.CreateCollection(request, metadata=who(tenant_id))) == expected
    forged = ingestion_pb2.ListCollectionsRequest(page=common_pb2.PageRequest(page_token="forged"))
    assert await code_of(ingestion.ListCollections(forged, metadata=who(tenant_id))) == grpc.StatusCode.INVALID_ARGUMENT
    # The same name is free for another tenant.
    await new_collection(ingestion, str(uuid.uuid4()), "Collection 0")


async def test_deleting_announces_chunks_deleted(ingestion: Stub, nats_client: NatsClient, tenant_id: str) -> None:
    collection = await new_collection(ingestion, tenant_id)
    document = await ingestion.IngestDocument(iter(upload(collection.id, [GUIDE.encode()])), metadata=who(tenant_id))
    other = await ingestion.IngestDocument(
        iter(upload(collection.id, [b"# Other\n\nMore text."], filename="other.md")), metadata=who(tenant_id)
    )

    await ingestion.DeleteDocument(
        ingestion_pb2.DeleteDocumentRequest(document_id=document.id), metadata=who(tenant_id)
    )

    deleted = await wait_for_event(
        nats_client.jetstream(),
        "docs.chunks.deleted",
        events_pb2.ChunksDeleted.FromString,
        lambda event: event.document_id == document.id,
    )
    assert (deleted.tenant_id, deleted.collection_id) == (tenant_id, collection.id)
    assert (
        await code_of(
            ingestion.GetDocument(ingestion_pb2.GetDocumentRequest(document_id=document.id), metadata=who(tenant_id))
        )
        == grpc.StatusCode.NOT_FOUND
    )

    await ingestion.DeleteCollection(
        ingestion_pb2.DeleteCollectionRequest(collection_id=collection.id), metadata=who(tenant_id)
    )

    dropped = await wait_for_event(
        nats_client.jetstream(),
        "docs.chunks.deleted",
        events_pb2.ChunksDeleted.FromString,
        lambda event: event.collection_id == collection.id and not event.document_id,
    )
    assert dropped.tenant_id == tenant_id
    gone = [
        ingestion.GetCollection(
            ingestion_pb2.GetCollectionRequest(collection_id=collection.id), metadata=who(tenant_id)
        ),
        ingestion.GetDocument(ingestion_pb2.GetDocumentRequest(document_id=other.id), metadata=who(tenant_id)),
    ]
    assert [await code_of(call) for call in gone] == [grpc.StatusCode.NOT_FOUND] * 2
