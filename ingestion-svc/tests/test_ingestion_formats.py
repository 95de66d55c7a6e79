"""Document formats: told from content and name (the caller's type wins), refused with a reason
when unreadable, read into sections by heading, page or scene; golden numbers on ../shared/data."""

import hashlib
import io
from pathlib import Path

import pytest
from pypdf import PdfWriter

from parley.ingestion.formats import Parser, detect_format, parse_document
from parley.ingestion.html_text import html_document
from parley.ingestion.pdf_text import pdf_sections
from parley.ingestion.sections import chunk_sections, markdown_sections, new_section, normalise_text
from parley.kit.contracts import FINAL_DRAFT, FOUNTAIN, HTML, MARKDOWN, PDF, PLAIN_TEXT
from parley.kit.errors import InvalidInput
from parley.kit.tokens import count_tokens

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared test data is not at {DATA}")


@pytest.mark.parametrize(
    ("data", "filename", "kind"),
    [
        (b"%PDF-1.7\n...", "upload.bin", PDF),
        (b'<?xml version="1.0"?>\n<FinalDraft DocumentType="Script">', "script.xml", FINAL_DRAFT),
        (b"<!DOCTYPE html><html><body>Hi</body></html>", "", HTML),
        (b"<!-- saved --><html lang=en><p>Hi</p></html>", "page.txt", HTML),
        (b"Title: X\n\nINT. HOUSE - DAY\n\nA door.\n", "", FOUNTAIN),
        (b"INT. HOUSE - DAY\n\nA door.\n\nEXT. ROAD - NIGHT\n\nA car.\n", "", FOUNTAIN),
        (b"# Notes\n\nSome text.\n", "", MARKDOWN),
        (b"Just a sentence.\n", "", PLAIN_TEXT),
        (b"Just a sentence.\n", "notes.md", MARKDOWN),
        (b"Title: Script\n\nINT. HOUSE - DAY\n\nA door.\n", "script.txt", FOUNTAIN),
        (b"INT. HOUSE - DAY\n\nA door.\n\nEXT. ROAD - NIGHT\n", "notes.md", MARKDOWN),
        (b"INT. HOUSE - DAY\n\nA door.\n", "scene.fountain", FOUNTAIN),
        (b'\xef\xbb\xbf<FinalDraft DocumentType="Script">', "", FINAL_DRAFT),
        # Notes that mention the format's root element are notes, not a Final Draft file.
        (b"# Sources\n\nAn `.fdx` file starts with `<FinalDraft DocumentType=...>`.\n", "SOURCES.md", MARKDOWN),
    ],
)
def test_format_from_content_then_name(data: bytes, filename: str, kind: str) -> None:
    assert detect_format(data, filename, None) == kind


def test_a_declared_type_wins_when_it_is_one_we_read() -> None:
    assert detect_format(b"# Title\n", "a.md", "text/plain; charset=utf-8") == PLAIN_TEXT
    with pytest.raises(InvalidInput, match="'image/png' is not supported"):
        detect_format(b"# Title\n", "a.md", "image/png")


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (b"", "a.txt", "empty"),
        (b"  \n\t", "a.txt", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "picture.png", "looks binary"),
        (b"PK\x03\x04\x14\x00\x00\x00", "doc.docx", "looks binary"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 an old Word file", "old.doc", "looks binary"),
    ],
)
def test_unreadable_uploads_are_refused_with_a_reason(data: bytes, filename: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        detect_format(data, filename, None)


@pytest.mark.parametrize(
    ("data", "declared", "message"),
    [
        (b"%PDF-1.4\n%%EOF garbage", None, "PDF cannot be read"),
        (b"caf\xe9", "text/plain", "not valid UTF-8"),
        (b"<html><script>x()</script></html>", None, "no text to index"),
        (b"<FinalDraft><Content>", None, "not well-formed"),
    ],
)
def test_broken_documents_are_refused(data: bytes, declared: str | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_document(data, filename="upload", declared=declared)


def test_a_pdf_without_a_text_layer_is_refused() -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)  # what a scan without OCR reads as: no text at all
    buffer = io.BytesIO()
    writer.write(buffer)

    with pytest.raises(InvalidInput, match="no text layer"):
        parse_document(buffer.getvalue(), filename="scan.pdf")


def test_normalised_text_hash_ignores_line_ends_and_trailing_space() -> None:
    one = new_section(ordinal=0, kind="text", text="A line  \r\nB\r\n\r\n\r\n\r\nC\n")
    two = new_section(ordinal=0, kind="text", text="A line\nB\n\nC")

    assert one.text == "A line\nB\n\nC" == normalise_text("A line \r\nB\r\n\r\n\r\nC")
    assert one.content_sha256 == two.content_sha256 == hashlib.sha256(b"A line\nB\n\nC").hexdigest()
    assert new_section(ordinal=0, kind="text", text="A line\nB\n\nD").content_sha256 != one.content_sha256


@pytest.mark.parametrize(
    ("data", "title"),
    [
        (
            b'---\ntitle: "Install Guide"\ntags: [setup]\ndescription: >\n  How.\n---\n\nIntro.\n\n# Setup\nRun it.\n',
            "Install Guide",
        ),
        (b"+++\ntitle = 'Install Guide'\nweight = 2\n+++\nIntro.\n\n# Setup\nRun it.\n", "Install Guide"),
        (b"---\nsidebar_position: 1\n---\nIntro.\n\n# Setup\nRun it.\n", ""),
    ],
)
def test_markdown_front_matter_is_metadata_not_content(data: bytes, title: str) -> None:
    parsed = parse_document(data, filename="install.md")

    assert parsed.title == title
    assert [(section.heading_path, section.text) for section in parsed.sections] == [
        ((), "Intro."),
        (("Setup",), "Run it."),
    ]


def test_a_markdown_rule_at_the_top_is_not_front_matter() -> None:
    parsed = parse_document(b"---\n\nA rule, then text.\n\n---\n\nMore.\n", filename="notes.md")

    assert parsed.title == ""
    assert "A rule, then text." in parsed.sections[0].text


def test_markdown_sections_keep_the_heading_path_after_tables_and_lists() -> None:
    text = (
        "Intro.\n\n# Guide\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nAfter the table.\n\n"
        "## Steps\n\n- one\n- two\n\nAfter the list.\n"
    )

    sections = markdown_sections(text)

    assert [(section.kind, section.heading_path, section.text.splitlines()[-1]) for section in sections] == [
        ("text", (), "Intro."),
        ("heading", ("Guide",), "After the table."),
        ("heading", ("Guide", "Steps"), "After the list."),
    ]


def test_a_section_over_the_budget_splits_into_chunks_that_keep_its_place() -> None:
    long = "\n\n".join(f"Paragraph {n} is about chunking and nothing else at all." for n in range(40))
    sections = markdown_sections(f"# Small\n\nShort.\n\n# Big\n\n{long}\n\n# Last\n\nEnd.\n")

    chunks = chunk_sections(sections, max_tokens=60)

    assert all(count_tokens(chunk.text) <= 60 for chunk in chunks)
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    big = [chunk for chunk in chunks if chunk.section_ordinal == 1]
    assert len(big) > 1 and {chunk.heading for chunk in big} == {"Big"}
    assert [chunk.section_ordinal for chunk in chunks] == sorted(chunk.section_ordinal for chunk in chunks)
    assert chunks[-1].heading == "Last"


PAGE = """<!DOCTYPE html><html><head><title> A  Guide </title><style>p{color:red}</style>
<script>var menu = "do not index";</script></head><body>
<nav><a href="/">Home</a></nav><div class="menu mainmenu"><ul><li>Docs</li></ul></div>
<div id="searchbox"><form><input name=q></form></div>
<h1>Guide</h1><p>First &amp; foremost.</p>
<h2>Tables</h2><table><tr><th>Name</th><th>Size</th></tr><tr><td>a.db</td><td>4 KB</td></tr></table>
<p>Text after the table.</p>
<h2>Lists</h2><ul><li>one<li>two</ul><p>Text after the list.
<h3>Code</h3><pre>line 1
  line 2</pre>
<footer>Copyright</footer></body></html>"""


def test_html_keeps_content_under_its_headings_and_drops_the_rest() -> None:
    title, sections = html_document(PAGE)

    assert title == "A Guide"
    assert [section.heading_path for section in sections] == [
        ("Guide",),
        ("Guide", "Tables"),
        ("Guide", "Lists"),
        ("Guide", "Lists", "Code"),
    ]
    assert sections[0].text == "First & foremost."
    assert sections[1].text == "Name | Size\n\na.db | 4 KB\n\nText after the table."
    assert sections[2].text == "one\n\ntwo\n\nText after the list."
    assert sections[3].text == "line 1\n  line 2"
    everything = " ".join(section.text for section in sections)
    for dropped in ("do not index", "Home", "Docs", "color", "Copyright"):
        assert dropped not in everything


def test_html_in_the_charset_its_meta_declares() -> None:
    page = '<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title></head><body><p>Cr\xe8me.</p></body></html>'

    document = parse_document(page.encode("latin-1"), filename="menu.html")

    assert (document.title, document.sections[0].text) == ("Caf\u00e9", "Cr\u00e8me.")


def test_html_main_element_is_the_content_when_marked() -> None:
    _, sections = html_document("<body><div>Sidebar blurb</div><main><h1>Real</h1><p>Body.</p></main></body>")

    assert [(section.heading_path, section.text) for section in sections] == [(("Real",), "Body.")]


def test_html_layout_classes_on_the_page_itself_do_not_drop_it() -> None:
    # mdBook marks <html class="light sidebar-visible">; the sidebar itself is a <nav>.
    page = (
        '<html class="light sidebar-visible"><body><nav class="sidebar"><ol><li>Chapter 1</li></ol></nav>'
        '<div class="page"><main><h1>Working with Unsafe</h1><p>Rust gives us tools.</p></main></div></body></html>'
    )

    _, sections = html_document(page)

    assert [(section.heading_path, section.text) for section in sections] == [
        (("Working with Unsafe",), "Rust gives us tools.")
    ]


def test_html_that_is_all_marked_as_chrome_still_gives_its_text() -> None:
    _, sections = html_document('<div class="menu"><p>Opening hours: 9 to 5.</p></div>')

    assert [section.text for section in sections] == ["Opening hours: 9 to 5."]


def test_html_article_header_stays_and_words_that_contain_toc_are_content() -> None:
    page = (
        "<header class=site>Site name</header><article><header><h1>Post</h1></header>"
        '<div id="protocol-notes"><p>The protocol.</p></div><div class="toc">1. Post</div></article>'
    )

    _, sections = html_document(page)

    assert [(section.heading_path, section.text) for section in sections] == [(("Post",), "The protocol.")]


@needs_data
@pytest.mark.parametrize(
    ("name", "title", "headed_sections"),
    [
        # Counted with `grep -o '<h[1-6]'` over each page (and in SOURCES.md): whentouse h1 ×1 + h2 ×3;
        # datatype3 h1 ×7 + h2 ×11 + h3 ×2; each heading has text under it, so one section each.
        ("sqlite-whentouse.html", "Appropriate Uses For SQLite", 4),
        ("sqlite-datatype3.html", "Datatypes In SQLite", 20),
    ],
)
def test_sqlite_pages_golden(name: str, title: str, headed_sections: int) -> None:
    document = parse_document((DATA / "html" / name).read_bytes(), filename=name)

    assert document.format == HTML and document.title == title
    headed = [section for section in document.sections if section.kind == "heading"]
    assert len(headed) == headed_sections
    # Before the first heading there is at most the page's own title banner (datatype3's "fancy_title").
    assert [section.text for section in document.sections if section.kind != "heading"] in ([], [title])
    text = " ".join(section.text for section in document.sections)
    for navigation in ("Small. Fast. Reliable.", "Search Documentation", "toggle_div", "Table Of Contents"):
        assert navigation not in text


@needs_data
def test_sqlite_datatype3_nested_headings_golden() -> None:
    _, sections = html_document((DATA / "html" / "sqlite-datatype3.html").read_text())

    paths = [section.heading_path for section in sections]
    assert ("3. Type Affinity", "3.1. Determination Of Column Affinity", "3.1.1. Affinity Name Examples") in paths
    examples = next(section for section in sections if section.heading == "3.1.1. Affinity Name Examples")
    assert "INT" in examples.text and "VARCHAR(255)" in examples.text  # the table under the h3


@needs_data
def test_pdf_with_an_outline_golden() -> None:
    # pdflatex-outline.pdf: 4 pages, a contents page, then sections "1 Foo" … "9 Baz" whose
    # outline entries point at pages 2–4 (read in a PDF viewer's bookmarks pane and with pypdf).
    sections = pdf_sections((DATA / "pdf" / "pdflatex-outline.pdf").read_bytes())

    assert (sections[0].kind, sections[0].page, sections[0].text.splitlines()[0]) == ("page", 1, "Contents")
    starts = [section for section in sections if section.text.split("\n", 1)[0][:1].isdigit() and section.page != 1]
    assert [section.text.split("\n", 1)[0] for section in starts] == [
        f"{n} {t}" for n, t in enumerate(["Foo", "Bar", "Baz"] * 3, 1)
    ]
    assert [section.page for section in starts] == [2, 2, 2, 2, 3, 3, 3, 4, 4]
    assert {section.page for section in sections} == {1, 2, 3, 4}


@needs_data
def test_pdf_headings_from_type_size_golden() -> None:
    # multi_page.pdf has no outline; its 10 section headings are set at 13.4 pt over a 12 pt body
    # (SOURCES.md, and pypdf's reported font sizes). Sections continue across pages with their heading.
    sections = pdf_sections((DATA / "pdf" / "multi_page.pdf").read_bytes())

    headings = list(dict.fromkeys(section.heading for section in sections if section.heading))
    assert len(headings) == 10
    assert headings[0] == "Pre-Digital Era (19th - Early 20th Century)"
    assert headings[-1] == "A Glimpse Into the Future"
    assert sections[0].kind == "page" and sections[0].text.startswith("The Evolution of the Word Processor")
    assert [section.page for section in sections] == sorted(section.page or 0 for section in sections)
    assert max(section.page or 0 for section in sections) == 5


@needs_data
def test_two_column_and_scanned_style_pdfs_still_give_text() -> None:
    paper = pdf_sections((DATA / "pdf" / "multi-column-2p.pdf").read_bytes())
    handbook = pdf_sections((DATA / "pdf" / "amt_handbook_sample.pdf").read_bytes())

    assert paper[0].heading == "Dense Passage Retrieval for Open-Domain Question Answering"
    assert {section.page for section in paper} == {1, 2}
    assert len(handbook) == 1 and handbook[0].page == 1 and "bearing" in handbook[0].text


@needs_data
def test_every_shared_file_is_detected_and_read() -> None:
    kinds = {
        path.name: parse_document(path.read_bytes(), filename="upload").format
        for folder in ("screenplays", "pdf", "html")
        for path in sorted((DATA / folder).iterdir())
    }

    assert kinds == {
        "Brick-and-Steel.fountain": FOUNTAIN,
        "The-Last-Birthday-Card.fountain": FOUNTAIN,
        "TestFDX-FD.fdx": FINAL_DRAFT,
        "TestFDX-FD.fountain": FOUNTAIN,
        "amt_handbook_sample.pdf": PDF,
        "multi-column-2p.pdf": PDF,
        "multi_page.pdf": PDF,
        "pdflatex-outline.pdf": PDF,
        "sqlite-datatype3.html": HTML,
        "sqlite-fts5.html": HTML,
        "sqlite-howtocorrupt.html": HTML,
        "sqlite-whentouse.html": HTML,
    }


async def test_the_worker_takes_what_the_upload_parsed_instead_of_parsing_again() -> None:
    parser = Parser(keep_bytes=100)
    script = b"Title: X\n\nINT. HOUSE - DAY\n\nA door.\n"

    uploaded = await parser.parse(script, filename="x.fountain")  # what the upload checks
    taken = await parser.parse(script, filename="x.fountain", declared=uploaded.format)  # the job

    assert taken is uploaded
    again = await parser.parse(script, filename="x.fountain", declared=uploaded.format)  # a redelivered job
    assert again is not uploaded and again.sections == uploaded.sections
    # Another type is another reading; what does not fit the bound is not remembered.
    assert (await parser.parse(script, filename="x.txt", declared=PLAIN_TEXT)).format == PLAIN_TEXT
    big = b"word " * 100
    first = await parser.parse(big, filename="big.txt")
    assert await parser.parse(big, filename="big.txt", declared=PLAIN_TEXT) is not first
