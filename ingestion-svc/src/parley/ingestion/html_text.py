"""An HTML page's main content as sections by heading, read with the standard library's parser.

Dropped: scripts, styles, forms and what is site chrome rather than content — <nav>, <footer>,
<aside>, a page-level <header> (one inside <main> or <article> holds the article's title and
stays), and elements whose class or id names navigation (`menu`, `nav`, `search`, `toc`,
`sidebar`, `breadcrumb`, `banner`, `cookie`, `tagline`, ... as whole words, so `protocol` is
not `toc`; never on <html>, <body>, <main> or <article>, which are the page or its content whatever
their classes say, and not at all when that would leave nothing). When the page marks its <main>
or <article>, only that is read. h1–h6 give the
heading path; a table's rows and a list's items stay under the heading above them. Nothing is
fetched: links and images are only text.
"""

import re
from dataclasses import dataclass
from html.parser import HTMLParser

from parley.ingestion.sections import Section, outline_sections

_DROPPED_TAGS = frozenset(
    {"script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg", "iframe"}
)
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
_BLOCK_TAGS = frozenset(
    {
        "p", "div", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "thead", "tbody", "blockquote",
        "section", "article", "main", "figure", "figcaption", "pre", "br", "hr", "address", "details", "summary",
    }
)  # fmt: skip
_CELL_TAGS = frozenset({"td", "th"})
# The page itself or its content: a class such as `sidebar-visible` on <html> says how to lay the
# page out, not that it is navigation.
_NEVER_CHROME = frozenset({"html", "body", "main", "article"})
_NAVIGATION_WORDS = frozenset(
    {
        "nav", "navbar", "navigation", "menu", "mainmenu", "submenu", "menubar", "search", "searchbox",
        "searchmenu", "searchbar", "toc", "sidebar", "breadcrumb", "breadcrumbs", "banner", "cookie", "cookies",
        "footer", "masthead", "tagline", "logo", "skip", "share", "social",
    }
)  # fmt: skip
_MARK_WORD = re.compile(r"[a-z]+")
_HEADING = re.compile(r"^h([1-6])$")
_SPACE = re.compile(r"[ \t\r\n\f\v]+")


@dataclass(frozen=True, slots=True)
class _Block:
    level: int  # 1–6 for a heading, 0 for text
    text: str
    in_main: bool


def _is_navigation(attrs: list[tuple[str, str | None]]) -> bool:
    marks = " ".join(value or "" for name, value in attrs if name in ("class", "id", "role")).lower()
    return any(word in _NAVIGATION_WORDS for word in _MARK_WORD.findall(marks))


class _Reader(HTMLParser):
    def __init__(self, *, drop_marked: bool = True) -> None:
        super().__init__(convert_charrefs=True)
        self._drop_marked = drop_marked
        self.blocks: list[_Block] = []
        self.title = ""
        self._skipping = ""  # the tag of the dropped element we are inside
        self._skip_depth = 0  # how deep that tag nests inside itself
        self._main_depth = 0
        self._pre_depth = 0
        self._in_title = False
        self._heading = 0
        self._buffer: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping:
            if tag == self._skipping:
                self._skip_depth += 1
            return
        if tag == "title":
            self._in_title = True
            return
        if tag in _VOID_TAGS:
            if tag in ("br", "hr"):
                self._flush()
            return
        chrome = tag in _DROPPED_TAGS and not (tag == "header" and self._main_depth)
        marked = self._drop_marked and tag not in _NEVER_CHROME and _is_navigation(attrs)
        if chrome or marked:
            self._skipping, self._skip_depth = tag, 1
            return
        if tag in ("main", "article"):
            self._main_depth += 1
        heading = _HEADING.match(tag)
        if heading or tag in _BLOCK_TAGS:
            self._flush()
        if heading:
            self._heading = int(heading.group(1))
        if tag == "pre":
            self._pre_depth += 1
        if tag in _CELL_TAGS:
            self._buffer.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skipping = ""
            return
        if tag == "title":
            self._in_title = False
            return
        if _HEADING.match(tag) or tag in _BLOCK_TAGS:
            self._flush()
        if tag in ("main", "article") and self._main_depth:
            self._main_depth -= 1
        if tag == "pre" and self._pre_depth:
            self._pre_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._in_title:
            self.title += data
            return
        self._buffer.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        raw = "".join(self._buffer)
        self._buffer.clear()
        text = raw.strip("\n") if self._pre_depth else _SPACE.sub(" ", raw).strip().strip("|").strip()
        if text.strip():
            self.blocks.append(_Block(self._heading, text, self._main_depth > 0))
        self._heading = 0


def html_document(text: str) -> tuple[str, list[Section]]:
    """The page's <title> and its sections."""
    reader = _read(text, drop_marked=True)
    if not reader.blocks:
        reader = _read(text, drop_marked=False)  # chrome by its classes was all there was: keep it
    blocks = reader.blocks
    if any(block.in_main for block in blocks):
        blocks = [block for block in blocks if block.in_main]
    outline = (((block.level, block.text) if block.level else None, block.text) for block in blocks)
    sections = outline_sections(outline, joiner="\n\n")
    return " ".join(reader.title.split()), sections


def _read(text: str, *, drop_marked: bool) -> _Reader:
    reader = _Reader(drop_marked=drop_marked)
    reader.feed(text)
    reader.close()
    return reader
