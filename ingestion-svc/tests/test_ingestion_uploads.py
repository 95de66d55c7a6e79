"""The checks an upload passes before anything is stored, and page tokens."""

import uuid

import pytest

from parley.ingestion.documents import check_title, decode_content, default_title, resolve_content_type
from parley.ingestion.ids import chunk_id
from parley.kit.errors import InvalidInput, NotFound
from parley.kit.ids import parse_id


@pytest.mark.parametrize(
    ("content_type", "filename", "expected"),
    [
        ("text/markdown", "", "text/markdown"),
        ("Text/Plain; charset=utf-8", "notes.md", "text/plain"),
        ("", "guide.md", "text/markdown"),
        ("", "Guide.MARKDOWN", "text/markdown"),
        ("", "notes.txt", "text/plain"),
        # What browsers and curl declare for a file type they do not know: the name decides.
        ("application/octet-stream", "notes.md", "text/markdown"),
    ],
)
def test_content_type_is_declared_or_inferred(content_type: str, filename: str, expected: str) -> None:
    assert resolve_content_type(content_type, filename) == expected


@pytest.mark.parametrize(("content_type", "filename"), [("application/pdf", "a.pdf"), ("", "a.pdf"), ("", "")])
def test_other_content_types_are_refused_naming_the_allowed_ones(content_type: str, filename: str) -> None:
    with pytest.raises(InvalidInput, match="text/plain, text/markdown"):
        resolve_content_type(content_type, filename)


def test_content_must_be_utf8_text() -> None:
    assert decode_content("\ufeffhéllo".encode()) == "héllo"
    for bad in (b"\xff\xfe bad", b"nul\x00inside", b"", b" \n\t "):
        with pytest.raises(InvalidInput):
            decode_content(bad)


def test_titles() -> None:
    assert default_title("intro\n\n# The Guide\n", content_type="text/markdown", filename="x.md") == "The Guide"
    assert default_title("# Not markdown here", content_type="text/plain", filename="dir/notes.txt") == "notes"
    assert default_title("text", content_type="text/plain", filename="") == "Untitled"
    assert check_title("  A title  ") == "A title"
    with pytest.raises(InvalidInput):
        check_title("t" * 301)


def test_ids() -> None:
    document_id = uuid.uuid4()
    assert chunk_id(document_id, 1, 0) == uuid.uuid5(uuid.NAMESPACE_URL, f"{document_id}:1:0")
    assert parse_id(str(document_id), kind="document") == document_id
    with pytest.raises(NotFound):
        parse_id("not-a-uuid", kind="document")
