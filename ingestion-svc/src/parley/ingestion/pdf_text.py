"""A PDF's text layer as sections by page and heading, read with pypdf (BSD-3-Clause).

A PDF of a screenplay is read as a script (screenplay.script_sections): one section per scene,
its elements told apart by where each line starts on the page. In any other PDF, headings come
from the PDF's outline (bookmarks) when it has one; otherwise from type larger
than the body's (the size most of the text is set in), as a title or a section heading is;
otherwise each page is one section. A section never spans two pages, so each has its page.
A PDF with no text at all (a scan) is refused: there is nothing to search until it is OCRed.
So is one that costs more to read than its size warrants (`parse_budget.CpuBudget`): a hostile
file of a few KB can deflate into millions of operators.

CPU-bound: call it off the event loop (`asyncio.to_thread`).
"""

import io
import itertools
import re
from collections import Counter
from dataclasses import dataclass

from pypdf import PdfReader
from pypdf.errors import PdfReadError, PyPdfError
from pypdf.generic import Destination

from parley.ingestion.parse_budget import CpuBudget
from parley.ingestion.screenplay import PageLine, script_sections
from parley.ingestion.sections import Section, new_section
from parley.kit.errors import InvalidInput

MAX_PAGES = 2_000
MIB = 1024 * 1024
# A page of text is a few KB of instructions; more than this is a drawing or an attack.
MAX_PAGE_CONTENT_BYTES = 2 * MIB
HEADING_SIZE_RATIO = 1.11  # type this much larger than the body's is a heading (13.4 pt over 12 pt is)
MAX_HEADING_CHARS = 150

_SPACE = re.compile(r"\s+")
_NUMBERING = re.compile(r"(?:[0-9]+|[ivxlc]+|[a-z])?(?:\.[0-9]+)*\.?")


@dataclass(frozen=True, slots=True)
class Run:
    size: float  # points; 0 for turned text
    x: float  # where it starts on the page, in points from the left edge
    y: float  # its baseline, in points from the bottom
    text: str


@dataclass(frozen=True, slots=True)
class _Heading:
    level: int
    title: str


def pdf_sections(data: bytes) -> list[Section]:
    budget = CpuBudget.for_bytes(len(data), what="the PDF")
    reader = _open(data)
    pages = [_page_text(reader, index, budget) for index in range(len(reader.pages))]
    if not any(text.strip() for text, _ in pages):
        raise InvalidInput("the PDF has no text layer (a scanned document?); run OCR on it and upload the result")
    script = script_sections([_page_lines(runs) for _, runs in pages])
    if script is not None:
        return script
    outline = _outline_headings(reader)
    heading_sizes = [] if outline else _heading_sizes(pages)
    sections: list[Section] = []
    path: list[_Heading] = []
    body: list[str] = []

    def close(page: int) -> None:
        section = new_section(
            ordinal=len(sections),
            kind="heading" if path else "page",
            text="\n".join(body),
            heading=path[-1].title if path else "",
            heading_path=tuple(heading.title for heading in path),
            page=page,
        )
        if section.text:
            sections.append(section)
        body.clear()

    for index, (text, runs) in enumerate(pages):
        expected = outline.get(index, []) if outline else _sized_headings(runs, heading_sizes)
        for line in text.split("\n"):
            heading = _match(line, expected)
            if heading is None:
                body.append(line)
                continue
            expected = expected[expected.index(heading) + 1 :]
            close(index + 1)
            while path and path[-1].level >= heading.level:
                path.pop()
            path.append(_Heading(heading.level, line.strip() if not outline else heading.title))
            body.append(line)
        close(index + 1)
    return sections


def _open(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidInput("the PDF is encrypted with a password; upload it without one")
        pages = len(reader.pages)
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError) as error:
        raise InvalidInput(f"the PDF cannot be read ({type(error).__name__}: {error})") from None
    if pages == 0:
        raise InvalidInput("the PDF has no pages")
    if pages > MAX_PAGES:
        raise InvalidInput(f"the PDF has {pages} pages; at most {MAX_PAGES} are accepted")
    return reader


def _page_text(reader: PdfReader, index: int, budget: CpuBudget) -> tuple[str, list[Run]]:
    """The page's text, and its text runs with the size each is set in. A page whose drawing
    instructions are larger than MAX_PAGE_CONTENT_BYTES is refused before they are parsed (a
    few KB of deflated bytes can hold a million operators); every operator checks the budget."""
    runs: list[Run] = []

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        if abs(tm[1]) > abs(tm[0]) or abs(cm[1]) > abs(cm[0]):
            size = 0.0  # turned text (a margin stamp) is never a heading
        scale = abs(tm[3] or 1.0) * abs(cm[3] or 1.0)
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        runs.append(Run(round(size * scale, 1), x, y, text))

    def spend(*_: object) -> None:
        budget.check()

    try:
        page = reader.pages[index]
        contents = page.get_contents()
        size = len(contents.get_data()) if contents is not None else 0
        if size > MAX_PAGE_CONTENT_BYTES:
            raise InvalidInput(
                f"page {index + 1} of the PDF holds {size / MIB:.1f} MiB of drawing instructions; "
                f"more than {MAX_PAGE_CONTENT_BYTES / MIB:.0f} MiB a page is not read"
            )
        budget.check()
        text = page.extract_text(visitor_text=visit, visitor_operand_before=spend)
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError) as error:
        raise InvalidInput(f"page {index + 1} of the PDF cannot be read ({type(error).__name__})") from None
    return text, runs


def _heading_sizes(pages: list[tuple[str, list[Run]]]) -> list[float]:
    """Sizes larger than the body's (the size most characters of the document are set in), largest first."""
    sizes = Counter[float]()
    for _, runs in pages:
        for run in runs:
            sizes[run.size] += len(run.text.strip())
    if not sizes:
        return []
    body_size = sizes.most_common(1)[0][0]
    return sorted((size for size in sizes if size >= body_size * HEADING_SIZE_RATIO), reverse=True)


def _sized_headings(runs: list[Run], heading_sizes: list[float]) -> list[_Heading]:
    """Runs in a heading size, joined where they follow each other; larger type is a higher level."""
    headings: list[_Heading] = []
    current_size, current_text = 0.0, ""
    for size, run in ((run.size, run.text) for run in runs):
        if not run.strip():
            current_text += run if current_text else ""
            continue
        if size in heading_sizes and (not current_text or size == current_size):
            current_size, current_text = size, current_text + run
            continue
        if current_text:
            headings.append(_Heading(heading_sizes.index(current_size) + 1, current_text))
        current_size, current_text = (size, run) if size in heading_sizes else (0.0, "")
    if current_text:
        headings.append(_Heading(heading_sizes.index(current_size) + 1, current_text))
    return [heading for heading in headings if len(heading.title.strip()) <= MAX_HEADING_CHARS * 3]


def _page_lines(runs: list[Run]) -> list[PageLine]:
    """The page's printed lines top to bottom: runs on one baseline joined left to right."""
    lines: list[list[Run]] = []
    for run in sorted((run for run in runs if run.text.strip() and run.size), key=lambda run: (-run.y, run.x)):
        if lines and abs(lines[-1][0].y - run.y) < max(run.size, 1.0) / 3:
            lines[-1].append(run)
        else:
            lines.append([run])
    return [PageLine(x=line[0].x, y=line[0].y, text=_joined(line)) for line in lines]


def _joined(runs: list[Run]) -> str:
    """Runs of one line as text, a space put back where the gap between two is wider than a space
    would leave (widths estimated at 0.6 em, Courier's: the type screenplays are set in)."""
    text = runs[0].text
    for before, run in itertools.pairwise(runs):
        gap = run.x - (before.x + len(before.text) * 0.6 * before.size)
        if gap > 0.3 * run.size and not text.endswith(" ") and not run.text.startswith(" "):
            text += " "
        text += run.text
    return text


def _outline_headings(reader: PdfReader) -> dict[int, list[_Heading]]:
    """Outline entries by the page (0-based) they point at, in order."""
    by_page: dict[int, list[_Heading]] = {}

    def walk(entries: list[object], level: int) -> None:
        for entry in entries:
            if isinstance(entry, list):
                walk(entry, level + 1)
            elif isinstance(entry, Destination):
                page = reader.get_destination_page_number(entry)
                if page is not None and entry.title:
                    by_page.setdefault(page, []).append(_Heading(level, str(entry.title)))

    try:
        walk(list(reader.outline), 1)
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError):
        return {}  # a broken outline still leaves the text; fall back to the type sizes
    return by_page


def _squeeze(text: str) -> str:
    return _SPACE.sub("", text).lower()


def _match(line: str, expected: list[_Heading]) -> _Heading | None:
    """The first expected heading this line is: the line (numbering aside) is its title, or part of it."""
    squeezed = _squeeze(line)
    if not squeezed or len(line.strip()) > MAX_HEADING_CHARS:
        return None
    for heading in expected:
        title = _squeeze(heading.title)
        if squeezed == title or (len(squeezed) >= max(3, len(title) // 3) and title.startswith(squeezed)):
            return heading
        if title and squeezed.endswith(title) and _NUMBERING.fullmatch(squeezed[: -len(title)]):
            return heading
    return None
