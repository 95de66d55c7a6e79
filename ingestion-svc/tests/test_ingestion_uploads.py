"""The checks an upload passes before anything is stored, and page tokens."""

import uuid

import pytest

from parley.ingestion.documents import check_title, declared_type, default_title
from parley.ingestion.formats import parse_document
from parley.ingestion.ids import chunk_id
from parley.ingestion.pipeline import in_parts
from parley.kit.errors import InvalidInput, NotFound
from parley.kit.ids import parse_id
from parley.v1 import events_pb2


@pytest.mark.parametrize(
    ("data", "content_type", "filename", "expected"),
    [
        (b"# Notes", "text/markdown", "", "text/markdown"),
        (b"# Notes", "Text/Plain; charset=utf-8", "notes.md", "text/plain"),
        (b"Notes", "", "guide.md", "text/markdown"),
        (b"Notes", "", "Guide.MARKDOWN", "text/markdown"),
        (b"Notes", "", "notes.txt", "text/plain"),
        # What browsers and curl declare for a file type they do not know: the content and name decide.
        (b"Notes", "application/octet-stream", "notes.md", "text/markdown"),
        (b"INT. HOUSE - DAY\n\nA door.\n", "application/octet-stream", "pilot.fountain", "text/x-fountain"),
    ],
)
def test_content_type_is_declared_or_inferred(data: bytes, content_type: str, filename: str, expected: str) -> None:
    assert parse_document(data, filename=filename, declared=declared_type(content_type)).format == expected


def test_a_type_we_do_not_read_is_refused_naming_the_ones_we_do() -> None:
    with pytest.raises(InvalidInput, match="text/plain, text/markdown, text/html, application/pdf"):
        parse_document(b"hello", filename="a.png", declared=declared_type("image/png"))


def test_titles() -> None:
    def title(data: bytes, filename: str) -> str:
        return default_title(parse_document(data, filename=filename), filename=filename)

    assert title(b"intro\n\n# The Guide\n\nText.", "x.md") == "The Guide"
    assert title(b"# Not markdown here", "dir/notes.txt") == "Notes"
    assert title(b"text", "") == "Untitled"
    assert title(b"Title: Brick & Steel\n\nINT. HOUSE - DAY\n\nA door.\n", "draft.fountain") == "Brick & Steel"
    # A scene heading is not a script's title.
    assert title(b"INT. HOUSE - DAY\n\nA door.\n\nEXT. ROAD - NIGHT\n\nA car.\n", "pilot.fountain") == "Pilot"
    # Nor is a Fountain section, nor a title page's credit: with no Title: key the upload's name is.
    sectioned = b"# CHAPTER 1\n\nINT. HOUSE - DAY\n\nA door.\n\n# SCREENPLAY\n\nEXT. ROAD - NIGHT\n\nA car.\n"
    assert title(sectioned, "mr-and-mr-charles.fountain") == "Mr And Mr Charles"
    credited = b"Credit: Written by\nAuthor: Jo Ng\n\nINT. HOUSE - DAY\n\nA door.\n"
    assert title(credited, "the_long_night.fountain") == "The Long Night"
    assert title(b"text", "NASA-report_2024.txt") == "NASA Report 2024"
    assert check_title("  A title  ") == "A title"
    with pytest.raises(InvalidInput):
        check_title("t" * 301)


def test_ids() -> None:
    document_id = uuid.uuid4()
    assert chunk_id(document_id, "ab:0:1") == uuid.uuid5(uuid.NAMESPACE_URL, f"{document_id}:chunk:ab:0:1")
    assert parse_id(str(document_id), kind="document") == document_id
    with pytest.raises(NotFound):
        parse_id("not-a-uuid", kind="document")


def test_a_chunk_set_too_large_for_one_message_goes_in_numbered_parts_that_each_fit() -> None:
    chunk_set = events_pb2.ChunksUpserted(
        tenant_id="t", collection_id="c", document_id="d", version=4, document_title="T"
    )
    records = [
        events_pb2.ChunkRecord(chunk_id=str(n), ordinal=n, text=f"passage {n} " + "word " * 200) for n in range(50)
    ]

    parts = in_parts(chunk_set, records, max_bytes=10_000)

    assert len(parts) > 1
    assert all(part.ByteSize() <= 10_000 for part in parts)
    assert [(part.part, part.parts) for part in parts] == [(n, len(parts)) for n in range(1, len(parts) + 1)]
    assert [chunk.ordinal for part in parts for chunk in part.chunks] == list(range(50))  # every one, in order
    assert {(part.document_id, part.version, part.document_title) for part in parts} == {("d", 4, "T")}
    # A set that fits is one message, as before: no part numbers.
    [whole] = in_parts(chunk_set, records[:3], max_bytes=10_000)
    assert (whole.part, whole.parts, len(whole.chunks)) == (0, 0, 3)
    # A chunk that fits in no message cannot be sent at all.
    assert in_parts(chunk_set, records, max_bytes=500) == []
