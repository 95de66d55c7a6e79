"""What kind of document an upload is, and its sections.

The type is told from the content first (a PDF's `%PDF-`, a Final Draft root element, an HTML
doctype, a Fountain title page or scene headings, Markdown headings), then from the file name;
a type the caller declares wins when it is one we read. Whatever cannot be read — empty,
binary, broken, a scan without text, a type we do not read — is refused with an InvalidInput
that says what is wrong, before anything is stored.
"""

import asyncio
import codecs
import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass

from parley.ingestion.html_text import html_document
from parley.ingestion.pdf_text import pdf_sections
from parley.ingestion.screenplay import TITLE_PAGE_START, fdx_sections, fountain_sections, is_scene_heading
from parley.ingestion.sections import Section, markdown_sections, plain_sections
from parley.kit.contracts import (
    DOCUMENT_TYPES,
    FINAL_DRAFT,
    FOUNTAIN,
    HTML,
    MARKDOWN,
    PDF,
    PLAIN_TEXT,
    document_type_for,
)
from parley.kit.errors import InvalidInput

ACCEPTED = ", ".join(DOCUMENT_TYPES)
_SNIFF_BYTES = 4096
_HTML_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.I | re.S)
# The root element, after an XML declaration and comments: a text that only mentions <FinalDraft> is not one.
_FINAL_DRAFT_ROOT = re.compile(rb"^\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<FinalDraft[\s>]", re.S)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.I)
_MARKDOWN_MARK = re.compile(r"^(?: {0,3}#{1,6}\s+\S|\s*```|.+\n(?:=+|-+)\s*$|\s*[-*+]\s+\S|\s*\d+\.\s+\S)", re.M)
# A static-site generator's metadata block at the top of a Markdown file: YAML between `---` lines
# (Jekyll, Docusaurus, MkDocs) or TOML between `+++` lines (Hugo). Not content: its title is the
# document's title, the rest is dropped.
_FRONT_MATTER = re.compile(
    r"\A(?P<fence>---|\+\+\+)[ \t]*\n(?P<body>(?:[^\n]*\n){0,200}?)(?:(?P=fence)|\.\.\.)[ \t]*(?:\n|\Z)"
)
_FRONT_MATTER_LINE = re.compile(r"^(?:[A-Za-z_][\w.-]*[ \t]*[:=].*|[ \t]+.*|-[ \t].*|#.*|\[.*\]|)$")
_FRONT_MATTER_TITLE = re.compile(r"^title[ \t]*[:=][ \t]*(?P<title>.+?)[ \t]*$", re.M)


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    format: str
    title: str  # the document's own title (HTML <title>, a script's Title:), "" when it has none
    sections: list[Section]


def detect_format(data: bytes, filename: str, declared: str | None = None) -> str:
    """The document's type: the declared one if given (parameters such as charset ignored), else
    what the content shows, else what the name's ending implies, else plain text."""
    if declared and (kind := declared.split(";", 1)[0].strip().lower()):
        if kind not in DOCUMENT_TYPES:
            raise InvalidInput(f"content type {kind!r} is not supported; use one of {ACCEPTED}")
        return kind
    if not data.strip():
        raise InvalidInput("the document is empty")
    head = data[:_SNIFF_BYTES]
    if head.lstrip().startswith(b"%PDF-"):
        return PDF
    if b"\x00" not in head:
        if _FINAL_DRAFT_ROOT.match(head.removeprefix(b"\xef\xbb\xbf")):
            return FINAL_DRAFT
        if _HTML_START.match(head):
            return HTML  # in whatever charset its <meta> declares
    if _looks_binary(head):
        raise InvalidInput(f"{filename or 'the document'} looks binary, not text; accepted types are {ACCEPTED}")
    by_name = document_type_for(filename)
    text = head.decode("utf-8", errors="ignore")
    if by_name in (None, PLAIN_TEXT) and _looks_like_fountain(text):
        return FOUNTAIN  # screenplays are often saved as .txt
    if by_name is not None:
        return by_name
    if _MARKDOWN_MARK.search(text):
        return MARKDOWN
    return PLAIN_TEXT


def parse_document(data: bytes, *, filename: str, declared: str | None = None) -> ParsedDocument:
    """The document's type, title and sections; InvalidInput when it cannot be read.
    CPU-bound (a PDF most of all): call it off the event loop."""
    kind = detect_format(data, filename, declared)
    try:
        return _parse(data, kind)
    except RecursionError:
        # Nesting deep enough to exhaust the stack (XML elements, PDF objects) is never a document.
        raise InvalidInput(f"the {kind} document is nested too deeply to read") from None


def _parse(data: bytes, kind: str) -> ParsedDocument:
    if kind == PDF:
        sections = pdf_sections(data)
        return ParsedDocument(kind, _script_title(sections, first_line=True), sections)
    if kind == FINAL_DRAFT:
        sections = fdx_sections(data)
        return ParsedDocument(kind, _script_title(sections, first_line=True), _non_empty(sections, kind))
    text = decode_text(data, fallback=_declared_charset(data) if kind == HTML else None)
    if kind == HTML:
        title, sections = html_document(text)
        return ParsedDocument(kind, title, _non_empty(sections, kind))
    if kind == FOUNTAIN:
        sections = fountain_sections(text)
        return ParsedDocument(kind, _script_title(sections), _non_empty(sections, kind))
    if kind == MARKDOWN:
        title, body = _front_matter(text)
        return ParsedDocument(kind, title, _non_empty(markdown_sections(body), kind))
    return ParsedDocument(kind, "", _non_empty(plain_sections(text), kind))


def _front_matter(text: str) -> tuple[str, str]:
    """(its title or "", the text after it) when the Markdown opens with front matter, else ("", text)."""
    match = _FRONT_MATTER.match(text.lstrip("\ufeff"))
    if match is None or not all(_FRONT_MATTER_LINE.match(line) for line in match.group("body").splitlines()):
        return "", text
    title = _FRONT_MATTER_TITLE.search(match.group("body"))
    return (title.group("title").strip("\"'") if title else ""), text.lstrip("\ufeff")[match.end() :]


class Parser:
    """`parse_document` off the event loop, remembering its latest results by (content hash, type),
    so the ingest worker does not parse again the bytes the upload just parsed to check them (the
    same process, usually; another replica, or after a restart, simply parses). Bounded by the
    bytes of the documents it remembers."""

    def __init__(self, *, keep_bytes: int = 32 * 1024 * 1024) -> None:
        self._keep_bytes = keep_bytes
        self._recent: OrderedDict[tuple[str, str], tuple[int, ParsedDocument]] = OrderedDict()

    async def parse(
        self, data: bytes, *, filename: str, declared: str | None = None, sha256: str | None = None
    ) -> ParsedDocument:
        """`sha256`: the data's, when the caller has it already."""
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        if declared is not None and (kept := self._recent.pop((sha256, declared), None)) is not None:
            return kept[1]  # taken, not kept: a document is parsed by its upload, then once by its job
        parsed = await asyncio.to_thread(parse_document, data, filename=filename, declared=declared)
        if len(data) <= self._keep_bytes:
            self._recent[(sha256, parsed.format)] = (len(data), parsed)
            while sum(size for size, _ in self._recent.values()) > self._keep_bytes:
                self._recent.popitem(last=False)
        return parsed


def decode_text(data: bytes, *, fallback: str | None = None) -> str:
    """UTF-8 text; `fallback` is the encoding the document itself declares (an HTML meta charset)."""
    try:
        # utf-8-sig: a byte-order mark some editors write is not part of the text.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if fallback is None:
            raise InvalidInput(f"the content is not valid UTF-8 (byte {error.start})") from None
        text = data.decode(fallback, errors="replace")
    if "\x00" in text:
        raise InvalidInput("the content contains NUL bytes; it is not a text document")
    if not text.strip():
        raise InvalidInput("the document is empty")
    return text


def _declared_charset(data: bytes) -> str | None:
    """The charset an HTML page's <meta> declares, if Python knows it."""
    match = _META_CHARSET.search(data[:_SNIFF_BYTES])
    if match is None:
        return None
    name = match.group(1).decode("ascii", errors="ignore")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _looks_binary(head: bytes) -> bool:
    """NUL bytes, or bytes that are not UTF-8 (a text upload must be UTF-8 unless it is HTML that says otherwise)."""
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # A multi-byte character cut by the sniffing window is still text.
        return error.start < len(head) - 4
    return False


def _looks_like_fountain(text: str) -> bool:
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    headings = sum(
        1
        for index, line in enumerate(lines)
        if (index == 0 or not lines[index - 1]) and is_scene_heading(line) and not line.startswith(".")
    )
    return headings >= 1 and (headings >= 2 or bool(TITLE_PAGE_START.match(text.lstrip())))


def _script_title(sections: list[Section], *, first_line: bool = False) -> str:
    """A script's `Title:`. A PDF's or Final Draft file's title page has no keys: `first_line` takes its
    first line. Otherwise "": the caller names the script from its file, since a Fountain section
    (`# ACT ONE`) or a credit is not a title."""
    title_page = next((section for section in sections if section.kind == "title_page"), None)
    if title_page is None:
        return ""
    lines = title_page.text.split("\n")
    for line in lines:
        if line.lower().startswith("title:"):
            return line.split(":", 1)[1].strip()
    return lines[0].strip() if first_line else ""


def _non_empty(sections: list[Section], kind: str) -> list[Section]:
    if not sections:
        raise InvalidInput(f"the document has no text to index (read as {kind})")
    return sections
