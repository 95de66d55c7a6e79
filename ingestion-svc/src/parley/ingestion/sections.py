"""A document as an ordered list of sections, each with its heading path, page and (for a
screenplay) its scene; and those sections cut into token-sized chunks that keep their metadata.

A section's `content_sha256` is the hash of its normalised text, so a new version of a document
re-chunks only the sections whose hash changed, and a chunk's key — (section hash, which
occurrence of that hash, piece) — stays the same while its section does, so its id does too.
Every parser (Markdown, HTML, PDF, Fountain, FDX) builds its sections with `new_section`, so
the normalisation is the same for all of them.
"""

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from parley.ingestion.chunking import HEADING_SEPARATOR, headings_and_lines, split_text
from parley.kit.tokens import count_tokens

SectionKind = Literal["heading", "page", "scene", "title_page", "text"]
# A section's text hash and which occurrence of it (from 0, in document order) it is: what finds
# the same section in another version, even when a document repeats a section word for word.
SectionKey = tuple[str, int]

_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_RUN = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class DialogueBlock:
    """One speech: who (normalised cue), how many words were spoken, and whether it is dual dialogue."""

    character: str
    words: int
    dual: bool = False


@dataclass(frozen=True, slots=True)
class Scene:
    number: str  # as written (`#12A#`, FDX Number), else the scene's order from 1
    heading: str
    int_ext: str  # "INT", "EXT", "INT/EXT", or "" for a forced heading without one
    location: str
    time_of_day: str
    characters: tuple[str, ...]  # who speaks, normalised, in order of first speech
    dialogue_blocks: tuple[DialogueBlock, ...]
    dialogue_lines: int  # printed lines of speech (parentheticals and cues not counted)
    action_lines: int  # printed lines of action, centred text included
    lines: int  # every printed line of the scene, spacing included (55 make a page)
    start_page: int
    act_path: tuple[str, ...] = ()  # the Fountain sections (`#` act, `##` sequence, ...) above it
    forced: bool = False  # a `.HEADING` rather than INT./EXT.
    end_page: int = 0  # the page its last line is on; 0 in scenes stored before it was kept
    # What its scene card is filed under: its number, or "12 (2)" for the second scene a script numbers
    # 12, so every scene has a card of its own; "" in scenes stored before it was kept (their number is).
    key: str = ""


@dataclass(frozen=True, slots=True)
class Section:
    ordinal: int
    kind: SectionKind
    heading: str  # the section's own heading (a scene's heading line), "" when it has none
    heading_path: tuple[str, ...]  # every heading above it, its own last
    page: int | None  # the (first) page it is on, when the format has pages
    text: str  # normalised
    content_sha256: str
    tokens: int
    scene: Scene | None = None

    @property
    def heading_label(self) -> str:
        """The heading path as chunks carry it (`Setup › Installing`)."""
        return HEADING_SEPARATOR.join(self.heading_path)


@dataclass(frozen=True, slots=True)
class SectionChunk:
    """A token-sized piece of one section; `section_ordinal` ties it back to the section's metadata."""

    ordinal: int
    section_ordinal: int
    heading: str
    text: str
    token_count: int
    content_hash: str
    key: str  # section hash, occurrence and piece: the same for the same piece of an unchanged section
    # Its section's place, for retrieval's filters (ChunkRecord): "" / () / 0 where the format has none.
    scene_number: str = ""
    characters: tuple[str, ...] = ()
    page_start: int = 0
    page_end: int = 0


def normalise_text(text: str) -> str:
    """One form for the same words: NFC, LF line ends, no trailing spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_SPACE.sub("\n", text.replace("\x00", ""))
    return _BLANK_RUN.sub("\n\n", text).strip()


def new_section(
    *,
    ordinal: int,
    kind: SectionKind,
    text: str,
    heading: str = "",
    heading_path: tuple[str, ...] = (),
    page: int | None = None,
    scene: Scene | None = None,
) -> Section:
    normalised = normalise_text(text)
    return Section(
        ordinal=ordinal,
        kind=kind,
        heading=heading,
        heading_path=heading_path,
        page=page,
        text=normalised,
        content_sha256=hashlib.sha256(normalised.encode()).hexdigest(),
        tokens=count_tokens(normalised),
        scene=scene,
    )


def plain_sections(text: str) -> list[Section]:
    """Plain text is one section; empty text has none."""
    section = new_section(ordinal=0, kind="text", text=text)
    return [section] if section.text else []


def markdown_sections(text: str) -> list[Section]:
    """A section per heading (ATX and setext, never inside a fenced block), with the path of
    headings above it. Text before the first heading is a `text` section."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    sections = outline_sections(headings_and_lines(lines), joiner="\n")
    if not sections and any(line.strip() for line in lines):
        # Only headings: their words are still the document's content.
        return plain_sections(text)
    return sections


def outline_sections(items: Iterable[tuple[tuple[int, str] | None, str]], *, joiner: str) -> list[Section]:
    """Sections from a document's outline: each item is a heading `(level, title)` or, with
    None, a piece of body text. A heading closes the section before it and takes the place of
    any heading at its level or deeper in the path; body before the first heading is `text`."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []

    def close() -> None:
        section = new_section(
            ordinal=len(sections),
            kind="heading" if path else "text",
            text=joiner.join(body),
            heading=path[-1][1] if path else "",
            heading_path=tuple(title for _, title in path),
        )
        if section.text:
            sections.append(section)
        body.clear()

    for heading, line in items:
        if heading is None:
            body.append(line)
            continue
        close()
        level, title = heading
        while path and path[-1][0] >= level:
            path.pop()
        if title:
            path.append((level, title))
    close()
    return sections


def section_keys(hashes: Iterable[str]) -> list[SectionKey]:
    seen: Counter[str] = Counter()
    keys: list[SectionKey] = []
    for sha256 in hashes:
        keys.append((sha256, seen[sha256]))
        seen[sha256] += 1
    return keys


def chunk_sections(
    sections: list[Section], *, max_tokens: int, previous: Mapping[SectionKey, Sequence[str]] | None = None
) -> list[SectionChunk]:
    """Each section's paragraphs packed into chunks of at most `max_tokens`; a chunk never spans
    two sections, so each keeps its section's heading path, page and scene, in order. A section
    found in `previous` (another version's pieces by section key) keeps those pieces unsplit."""
    chunks: list[SectionChunk] = []
    keys = section_keys(section.content_sha256 for section in sections)
    for section, key in zip(sections, keys, strict=True):
        pieces = (previous or {}).get(key)
        if pieces is None:
            pieces = split_text(section.text, max_tokens=max_tokens)
        scene, first_page = section.scene, section.page or 0
        for index, piece in enumerate(pieces):
            chunks.append(
                SectionChunk(
                    ordinal=len(chunks),
                    section_ordinal=section.ordinal,
                    heading=section.heading_label,
                    text=piece,
                    token_count=count_tokens(piece),
                    content_hash=hashlib.sha256(piece.encode()).hexdigest(),
                    key=f"{key[0]}:{key[1]}:{index}",
                    scene_number=scene.number if scene else "",
                    characters=scene.characters if scene else (),
                    page_start=first_page,
                    page_end=max(first_page, scene.end_page) if scene else first_page,
                )
            )
    return chunks


@dataclass(frozen=True, slots=True)
class SectionChanges:
    added: int
    changed: int
    removed: int
    unchanged: int


def compare_sections(
    old: Sequence[tuple[tuple[str, ...], str]], new: Sequence[tuple[tuple[str, ...], str]]
) -> SectionChanges:
    """Sections given as (heading path, text hash). The same text anywhere is unchanged; what is
    left pairs up by heading path as changed; the rest of the new is added, of the old removed."""
    left_old = Counter(sha256 for _, sha256 in old)
    unchanged = 0
    unmatched_new: list[tuple[str, ...]] = []
    for path, sha256 in new:
        if left_old[sha256] > 0:
            left_old[sha256] -= 1
            unchanged += 1
        else:
            unmatched_new.append(path)
    old_paths: Counter[tuple[str, ...]] = Counter()
    for path, sha256 in old:
        if left_old[sha256] > 0:
            left_old[sha256] -= 1
            old_paths[path] += 1
    changed = 0
    for path in unmatched_new:
        if old_paths[path] > 0:
            old_paths[path] -= 1
            changed += 1
    return SectionChanges(
        added=len(unmatched_new) - changed,
        changed=changed,
        removed=sum(old_paths.values()),
        unchanged=unchanged,
    )
