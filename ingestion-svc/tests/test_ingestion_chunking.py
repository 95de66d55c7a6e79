"""Chunking: headings carried, token limits held, long paragraphs split, same input same output."""

import hashlib

import pytest

from parley.ingestion.sections import (
    SectionChanges,
    SectionChunk,
    chunk_sections,
    compare_sections,
    markdown_sections,
    plain_sections,
)
from parley.kit.tokens import count_tokens


def chunk_text(text: str, *, markdown: bool, max_tokens: int = 300) -> list[SectionChunk]:
    """What the worker does with a Markdown or plain-text upload."""
    sections = markdown_sections(text) if markdown else plain_sections(text)
    return chunk_sections(sections, max_tokens=max_tokens)


MANUAL = """# Setup

Parley needs PostgreSQL and NATS.

## Installing

Run the installer. It asks two questions.

```sh
# this is a comment, not a heading
make run
```

## Configuring

Set PARLEY_DATABASE_URL.

# Usage

Upload a document, then ask about it.
"""


def test_chunks_carry_their_heading_path() -> None:
    chunks = chunk_text(MANUAL, markdown=True)

    assert [(chunk.heading, chunk.text.splitlines()[0]) for chunk in chunks] == [
        ("Setup", "Parley needs PostgreSQL and NATS."),
        ("Setup › Installing", "Run the installer. It asks two questions."),
        ("Setup › Configuring", "Set PARLEY_DATABASE_URL."),
        ("Usage", "Upload a document, then ask about it."),
    ]
    assert "# this is a comment, not a heading" in chunks[1].text
    assert [chunk.ordinal for chunk in chunks] == [0, 1, 2, 3]


def test_setext_headings_start_sections() -> None:
    chunks = chunk_text("Guide\n=====\n\nIntro.\n\nDetails\n-------\n\nMore.\n", markdown=True)

    assert [(chunk.heading, chunk.text) for chunk in chunks] == [("Guide", "Intro."), ("Guide › Details", "More.")]


def test_plain_text_has_no_headings() -> None:
    chunks = chunk_text("# Not a heading here\n\nJust text.", markdown=False)

    assert [chunk.heading for chunk in chunks] == [""]
    assert chunks[0].text == "# Not a heading here\n\nJust text."


def test_small_paragraphs_are_packed_together_up_to_the_limit() -> None:
    text = "\n\n".join(f"Paragraph number {n} says a little." for n in range(40))

    chunks = chunk_text(text, markdown=False, max_tokens=60)

    assert len(chunks) > 1
    assert all(chunk.text.count("Paragraph") > 1 for chunk in chunks[:-1])
    assert all(count_tokens(chunk.text) <= 60 for chunk in chunks)
    assert " ".join(chunk.text.replace("\n\n", " ") for chunk in chunks) == text.replace("\n\n", " ")


@pytest.mark.parametrize(
    "paragraph",
    [
        "This sentence is about retrieval and nothing else. " * 120,
        "x" * 5000,  # no sentence end at all: cut at token boundaries
        "日本語のテキストです。" * 300,  # sentence ends without spaces
        "漢字" * 2000,  # multi-byte characters with no break anywhere
    ],
    ids=["sentences", "one-long-word", "cjk-sentences", "cjk-unbroken"],
)
def test_long_paragraphs_are_split_within_the_limit(paragraph: str) -> None:
    chunks = chunk_text(f"# Long\n\n{paragraph}", markdown=True, max_tokens=50)

    assert len(chunks) > 1
    assert all(0 < chunk.token_count <= 50 for chunk in chunks)
    assert all(chunk.token_count == count_tokens(chunk.text) for chunk in chunks)
    assert all(chunk.heading == "Long" for chunk in chunks)
    assert all("\ufffd" not in chunk.text for chunk in chunks)
    # Nothing lost: the chunks hold every non-space character of the paragraph, in order.
    assert "".join("".join(chunk.text.split()) for chunk in chunks) == "".join(paragraph.split())


def test_no_empty_chunks_and_hashes_match_text() -> None:
    chunks = chunk_text("# A\n\n\n\n   \n\n## B\n\nText.\n\n\n", markdown=True)

    assert [(chunk.heading, chunk.text) for chunk in chunks] == [("A › B", "Text.")]
    assert chunks[0].content_hash == hashlib.sha256(b"Text.").hexdigest()


def test_a_document_of_only_headings_still_has_its_words() -> None:
    chunks = chunk_text("# Title\n## Subtitle\n", markdown=True)

    assert [chunk.text for chunk in chunks] == ["# Title\n## Subtitle"]


def test_chunking_is_deterministic() -> None:
    text = MANUAL + "\n\n" + "Another sentence to split. " * 200

    assert chunk_text(text, markdown=True, max_tokens=40) == chunk_text(text, markdown=True, max_tokens=40)


def test_windows_line_endings_chunk_like_unix_ones() -> None:
    assert chunk_text(MANUAL.replace("\n", "\r\n"), markdown=True) == chunk_text(MANUAL, markdown=True)


def test_a_heading_in_a_code_block_is_text() -> None:
    sections = markdown_sections("```\n# not this\n```\n\n## Real title ##\n\nBody.\n")

    assert [section.heading_path for section in sections] == [(), ("Real title",)]
    assert [section.heading_path for section in markdown_sections("no headings at all")] == [()]


def test_a_section_another_version_already_chunked_keeps_its_pieces_and_keys() -> None:
    sections = markdown_sections(MANUAL)
    setup = sections[0]
    # As an earlier version split it (say, with a smaller limit): reused as it was, not split again.
    previous = {(setup.content_sha256, 0): ["Parley needs", "PostgreSQL and NATS."]}

    chunks = chunk_sections(sections, max_tokens=300, previous=previous)
    fresh = chunk_sections(sections, max_tokens=300)

    assert [chunk.text for chunk in chunks[:2]] == ["Parley needs", "PostgreSQL and NATS."]
    assert [chunk.key for chunk in chunks[2:]] == [chunk.key for chunk in fresh[1:]]
    assert [chunk.ordinal for chunk in chunks] == list(range(len(fresh) + 1))


def test_sections_compare_by_text_then_heading_path() -> None:
    old = [(("A",), "1"), (("B",), "2"), (("B",), "2"), (("C",), "3")]
    new = [(("A",), "1"), (("B",), "2"), (("C",), "3x"), (("D",), "4"), (("Moved",), "2")]

    assert compare_sections(old, new) == SectionChanges(added=1, changed=1, removed=0, unchanged=3)
    assert compare_sections(old, old) == SectionChanges(added=0, changed=0, removed=0, unchanged=4)
    assert compare_sections(old, []) == SectionChanges(added=0, changed=0, removed=4, unchanged=0)
