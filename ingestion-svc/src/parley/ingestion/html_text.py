"""An HTML page's main content as sections by heading, read with the standard library's parser.

Dropped: scripts, styles, forms and everything that is navigation rather than content —
<nav>, <header>, <footer>, <aside>, and elements whose class or id says menu, nav, search, toc,
sidebar, breadcrumb, banner, cookie, header or footer. When the page marks its <main> (or a
single <article>), only that is read. h1–h6 give the heading path; a table's rows and a list's
items stay under the heading above them. Nothing is fetched: links and images are only text.
"""

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from parley.ingestion.sections import Section, new_section

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
_NAVIGATION = re.compile(r"menu|nav|search|toc|sidebar|breadcrumb|banner|cookie|header|footer", re.IGNORECASE)
_HEADING = re.compile(r"^h([1-6])$")
_SPACE = re.compile(r"[ \t\r\n\f\v]+")


@dataclass
class _Block:
    level: int  # 1–6 for a heading, 0 for text
    text: str
    in_main: bool


@dataclass
class _Reader(HTMLParser):
    blocks: list[_Block] = field(default_factory=list)
    title: str = ""
    _skipping: list[str] = field(default_factory=list)  # the dropped element we are inside, and its nesting
    _skip_depth: int = 0
    _main_depth: int = 0
    _pre_depth: int = 0
    _in_title: bool = False
    _heading: int = 0
    _buffer: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping:
            if tag == self._skipping[0] and tag not in _VOID_TAGS:
                self._skip_depth += 1
            return
        if tag == "title":
            self._in_title = True
            return
        marks = " ".join(value or "" for name, value in attrs if name in ("class", "id", "role"))
        if tag in _DROPPED_TAGS or (tag not in _VOID_TAGS and marks and _NAVIGATION.search(marks)):
            if tag not in _VOID_TAGS:
                self._skipping.append(tag)
                self._skip_depth = 1
            return
        if tag in ("main", "article") or ("role", "main") in attrs:
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

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._skipping and tag in ("br", "hr"):
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping[0]:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skipping.clear()
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
    reader = _Reader()
    reader.feed(text)
    reader.close()
    blocks = reader.blocks
    if any(block.in_main for block in blocks):
        blocks = [block for block in blocks if block.in_main]
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []

    def close() -> None:
        section = new_section(
            ordinal=len(sections),
            kind="heading" if path else "text",
            text="\n\n".join(body),
            heading=path[-1][1] if path else "",
            heading_path=tuple(title for _, title in path),
        )
        if section.text:
            sections.append(section)
        body.clear()

    for block in blocks:
        if not block.level:
            body.append(block.text)
            continue
        close()
        while path and path[-1][0] >= block.level:
            path.pop()
        path.append((block.level, block.text))
    close()
    return " ".join(reader.title.split()), sections
