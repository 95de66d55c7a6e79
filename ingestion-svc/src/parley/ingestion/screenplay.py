"""Screenplays (Fountain and Final Draft `.fdx`) as one section per scene, with what a reader of
a script counts: who speaks, how many lines of dialogue and action, on which page a scene starts.

Both formats are read into the same elements (scene heading, action, cue + speech, transition,
...) and laid out on an estimated page: 55 lines a page, action wrapped at 61 characters,
speech at 35, parentheticals at 25, a blank line before each element except inside a speech
(the usual Courier 12 pt layout). A Final Draft file's own page numbers win when it has them.

Fountain, per https://fountain.io/syntax: title page `Key: value`; scene headings INT./EXT./EST./
I/E and forced `.HEADING`, scene numbers `#12A#`; sections `#`/`##`/... give a scene its act and
sequence; synopses `=`; notes `[[ ]]` and boneyard `/* */` are dropped; centred `> text <`;
transitions `... TO:` and forced `> TEXT`; page breaks `===`; character cues with extensions
`(V.O.)`, forced `@name` and dual dialogue `^`; forced action `!`; lyrics `~`; emphasis `*`/`_`.

A Final Draft file is XML; it is parsed with expat and refused if it has a DTD at all, so no
entity can be declared (no "billion laughs") and nothing external is ever fetched.

A PDF of a script has no markup, only where each line starts: a screenplay is set in Courier
12 pt with its elements at fixed indents from the action margin (dialogue about 1", parentheticals
about 1.5", cues about 2.2", transitions 4" and more), so the indent says what a line is. The action
margin is where most long lines start (dialogue is never that wide); the PDF's pages are the pages.
"""

import re
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NoReturn
from xml.etree import ElementTree
from xml.parsers import expat

from parley.ingestion.sections import DialogueBlock, Scene, Section, new_section
from parley.kit.errors import InvalidInput

LINES_PER_PAGE = 55
ACTION_WIDTH = 61
DIALOGUE_WIDTH = 35
PARENTHETICAL_WIDTH = 25

_SCENE_PREFIX = re.compile(
    r"^(?P<prefix>INT\.?\s*/\s*EXT|EXT\.?\s*/\s*INT|I\s*/\s*E|E\s*/\s*I|INT|EXT|EST)(?:\.\s*|\s+)(?P<rest>\S.*)$",
    re.IGNORECASE,
)
_SCENE_NUMBER = re.compile(r"\s*#(?P<number>[^#\s]+)#\s*$")
_TIME_SEPARATOR = re.compile(r"\s+(?:-{1,2}|–|—)\s+")
_TIME_WORDS = frozenset(
    "DAY NIGHT MORNING AFTERNOON EVENING DAWN DUSK SUNSET SUNRISE NOON MIDNIGHT LATER SAME CONTINUOUS "
    "CONTINUED MOMENT MOMENTS TIME".split()
)
_TITLE_KEY = re.compile(r"^(?P<key>[A-Za-z][A-Za-z ]*?):[ \t]*(?P<value>.*)$")
# A title page must open with one of the keys the spec names, so `FADE IN:` is not a title page.
TITLE_PAGE_START = re.compile(
    r"^(?:Title|Credit|Author|Authors|Source|Draft date|Date|Contact|Copyright|Notes|Revision|Episode)\s*:",
    re.IGNORECASE,
)
_BONEYARD = re.compile(r"/\*.*?\*/", re.DOTALL)
_NOTE = re.compile(r"\[\[.*?\]\]", re.DOTALL)
_PAGE_BREAK = re.compile(r"^={3,}$")
_SECTION = re.compile(r"^(?P<level>#{1,6})\s*(?P<title>.*?)\s*#*$")
_CENTRED = re.compile(r"^>\s*(?P<text>.*?)\s*<$")
_EXTENSION = re.compile(r"\([^)]*\)")
_EMPHASIS = re.compile(r"(\*{1,3}|_)(?=\S)(.+?)(?<=\S)\1")
_WORD = re.compile(r"[\w'’-]+")

Part = tuple[Literal["parenthetical", "speech"], str]


def normalise_cue(cue: str) -> str:
    """The character a cue names: `EDWARD (V.O.)`, `EDWARD (CONT'D)`, `@Edward ^` and `edward` are EDWARD."""
    name = cue.strip().lstrip("@").rstrip("^").strip()
    name = _EXTENSION.sub(" ", name).replace("’", "'")
    return " ".join(name.split()).upper()


def parse_scene_heading(heading: str) -> tuple[str, str, str]:
    """(INT/EXT, location, time of day) of a heading; a forced heading has no INT/EXT."""
    heading = " ".join(heading.split())
    match = _SCENE_PREFIX.match(heading)
    if match:
        prefix = re.sub(r"[\s.]", "", match.group("prefix")).upper()
        int_ext = {"INT": "INT", "EXT": "EXT", "EST": "EXT"}.get(prefix, "INT/EXT")
        rest = match.group("rest").strip()
    else:
        int_ext, rest = "", heading
    parts = _TIME_SEPARATOR.split(rest)
    if len(parts) > 1:
        return int_ext, " - ".join(parts[:-1]).strip(" ,."), parts[-1].strip(" ,.")
    location, comma, last = rest.rpartition(",")
    if comma and _TIME_WORDS & set(re.findall(r"[A-Z]+", last.upper())):
        return int_ext, location.strip(" ,."), last.strip(" ,.")
    return int_ext, rest.strip(" ,."), ""


def _wrapped_lines(text: str, width: int) -> int:
    return sum(max(1, len(textwrap.wrap(line, width))) for line in text.split("\n"))


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _plain(text: str) -> str:
    """Fountain emphasis (`*bold*`, `_underline_`) and escapes removed: the words as read."""
    for _ in range(3):
        stripped = _EMPHASIS.sub(r"\2", text)
        if stripped == text:
            break
        text = stripped
    return text.replace("\\*", "*").replace("\\_", "_")


@dataclass
class _SceneDraft:
    number: str
    heading: str
    forced: bool
    act_path: tuple[str, ...]
    start_page: int
    start_line: int
    paragraphs: list[str] = field(default_factory=list)
    blocks: list[DialogueBlock] = field(default_factory=list)
    dialogue_lines: int = 0
    action_lines: int = 0


class _Script:
    """Elements in reading order in, sections out: the layout and counting both formats share."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self._line = 0  # printed lines so far, title page excluded
        self._preamble: list[str] = []
        self._scene: _SceneDraft | None = None
        self._scene_count = 0
        self._numbers_used: Counter[str] = Counter()
        self._outline: list[tuple[int, str]] = []
        self._last_speech_lines = 0

    @property
    def page(self) -> int:
        return self._line // LINES_PER_PAGE + 1

    def title_page(self, text: str) -> None:
        section = new_section(ordinal=len(self.sections), kind="title_page", text=text, heading="Title page")
        if section.text:
            self.sections.append(section)

    def outline(self, level: int, title: str) -> None:
        while self._outline and self._outline[-1][0] >= level:
            self._outline.pop()
        if title:
            self._outline.append((level, title))

    def turn_to_page(self, page: int) -> None:
        """A printed page begins (a PDF's): count on from its first line, not from the estimate."""
        self._line = max(self._line, (page - 1) * LINES_PER_PAGE)

    def page_break(self) -> None:
        if self._line % LINES_PER_PAGE:
            self._line += LINES_PER_PAGE - self._line % LINES_PER_PAGE

    def heading(self, text: str, *, number: str = "", forced: bool = False, page: int | None = None) -> None:
        self._close()
        self._scene_count += 1
        self._line += 1  # the blank line before it
        self._scene = _SceneDraft(
            number=number or str(self._scene_count),
            heading=text,
            forced=forced,
            act_path=tuple(title for _, title in self._outline),
            start_page=page if page is not None else self.page,
            start_line=self._line - 1,
            paragraphs=[text],
        )
        self._line += _wrapped_lines(text, ACTION_WIDTH)

    def action(self, text: str) -> None:
        lines = _wrapped_lines(text, ACTION_WIDTH)
        self._line += 1 + lines
        self._text(text)
        if self._scene is not None:
            self._scene.action_lines += lines

    def transition(self, text: str) -> None:
        self._line += 2
        self._text(text)

    def synopsis(self, text: str) -> None:
        self._text(text)  # a note to the reader: not printed, so no lines

    def speech(self, cue: str, parts: list[Part], *, dual: bool = False) -> None:
        character = normalise_cue(cue)
        speech = " ".join(text for kind, text in parts if kind == "speech")
        spoken_lines = sum(_wrapped_lines(text, DIALOGUE_WIDTH) for kind, text in parts if kind == "speech")
        printed = 2 + sum(
            _wrapped_lines(text, DIALOGUE_WIDTH if kind == "speech" else PARENTHETICAL_WIDTH) for kind, text in parts
        )
        self._text("\n".join([cue.strip(), *(text for _, text in parts)]))
        scene = self._scene
        if scene is None:
            self._line += printed
            return
        if dual and scene.blocks:
            # The right column of dual dialogue sits beside the left: the taller one takes the room.
            scene.blocks[-1] = replace(scene.blocks[-1], dual=True)
            self._line += max(0, printed - self._last_speech_lines)
        else:
            self._line += printed
        self._last_speech_lines = printed
        scene.blocks.append(DialogueBlock(character=character, words=_words(speech), dual=dual))
        scene.dialogue_lines += spoken_lines

    def finish(self) -> list[Section]:
        self._close()
        return self.sections

    def _text(self, text: str) -> None:
        (self._scene.paragraphs if self._scene is not None else self._preamble).append(text)

    def _close(self) -> None:
        if self._scene is None:
            if self._preamble:
                section = new_section(
                    ordinal=len(self.sections),
                    kind="text",
                    text="\n\n".join(self._preamble),
                    heading_path=tuple(title for _, title in self._outline),
                    page=1,
                )
                if section.text:
                    self.sections.append(section)
                self._preamble = []
            return
        draft, self._scene = self._scene, None
        int_ext, location, time_of_day = parse_scene_heading(draft.heading)
        characters = tuple(dict.fromkeys(block.character for block in draft.blocks))
        self._numbers_used[draft.number] += 1
        repeat = self._numbers_used[draft.number]
        scene = Scene(
            number=draft.number,
            key=draft.number if repeat == 1 else f"{draft.number} ({repeat})",
            heading=draft.heading,
            int_ext=int_ext,
            location=location,
            time_of_day=time_of_day,
            characters=characters,
            dialogue_blocks=tuple(draft.blocks),
            dialogue_lines=draft.dialogue_lines,
            action_lines=draft.action_lines,
            lines=self._line - draft.start_line,
            start_page=draft.start_page,
            act_path=draft.act_path,
            forced=draft.forced,
            # As many pages on from its first as its lines run over (FDX's own page numbers kept).
            end_page=draft.start_page
            + max(0, (self._line - 1) // LINES_PER_PAGE - (draft.start_line + 1) // LINES_PER_PAGE),
        )
        self.sections.append(
            new_section(
                ordinal=len(self.sections),
                kind="scene",
                text="\n\n".join(draft.paragraphs),
                heading=draft.heading,
                heading_path=(*draft.act_path, draft.heading),
                page=draft.start_page,
                scene=scene,
            )
        )


# --- Fountain ---------------------------------------------------------------------------------------


def fountain_sections(text: str) -> list[Section]:
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    text = _NOTE.sub("", _BONEYARD.sub("", text))
    lines = text.split("\n")
    script = _Script()
    start = _title_page(lines, script)
    _fountain_body(lines[start:], script)
    return script.finish()


def is_scene_heading(line: str) -> bool:
    """An INT./EXT. (or EST., I/E) heading, or a forced `.HEADING`."""
    stripped = line.strip()
    return bool(_SCENE_PREFIX.match(stripped)) or (len(stripped) > 1 and stripped[0] == "." and stripped[1] != ".")


def _title_page(lines: list[str], script: _Script) -> int:
    """The title page's `Key: value` block at the very top, if any; the index of the first body line."""
    first = next((index for index, line in enumerate(lines) if line.strip()), len(lines))
    if first == len(lines) or not TITLE_PAGE_START.match(lines[first]):
        return 0
    entries: list[str] = []
    index = first
    while index < len(lines) and lines[index].strip():
        line = lines[index]
        key = _TITLE_KEY.match(line)
        if key and not line[:1].isspace():
            entries.append(f"{key.group('key').strip()}: {_plain(key.group('value').strip())}".rstrip())
        elif entries:
            separator = " " if entries[-1].endswith(":") else "\n"
            entries[-1] += separator + _plain(line.strip())
        index += 1
    script.title_page("\n".join(entries))
    return index


def _is_cue(stripped: str) -> bool:
    if stripped.startswith("@"):
        return len(stripped) > 1
    name = _EXTENSION.sub("", stripped.rstrip("^")).strip()
    return any(char.isalpha() for char in name) and not any(char.islower() for char in name) and not name.endswith(":")


def _is_transition(stripped: str) -> bool:
    return stripped.isupper() and stripped.endswith("TO:")


def _fountain_body(lines: list[str], script: _Script) -> None:
    index = 0
    previous_blank = True
    while index < len(lines):
        raw = lines[index]
        stripped = raw.strip()
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        index += 1
        if not stripped:
            previous_blank = True
            continue
        if _PAGE_BREAK.match(stripped):
            script.page_break()
        elif section := _SECTION.match(stripped):
            script.outline(len(section.group("level")), _plain(section.group("title")))
        elif stripped.startswith("=") and not stripped.startswith("=="):
            script.synopsis(_plain(stripped[1:].strip()))
        elif previous_blank and is_scene_heading(stripped):
            forced = stripped.startswith(".") and not _SCENE_PREFIX.match(stripped)
            heading = stripped[1:].strip() if forced else stripped
            number_match = _SCENE_NUMBER.search(heading)
            number = number_match.group("number") if number_match else ""
            heading = _SCENE_NUMBER.sub("", heading).strip()
            script.heading(_plain(heading), number=number, forced=forced)
        elif centred := _CENTRED.match(stripped):
            script.action(_plain(centred.group("text")))
        elif stripped.startswith(">"):
            script.transition(_plain(stripped[1:].strip()))
        elif previous_blank and not following and _is_transition(stripped):
            script.transition(stripped)
        elif previous_blank and following and not stripped.startswith("!") and _is_cue(stripped):
            parts: list[Part] = []
            while index < len(lines) and (lines[index].strip() or lines[index] == "  "):
                part = lines[index].strip()
                index += 1
                if part.startswith("(") and part.endswith(")"):
                    parts.append(("parenthetical", part))
                elif part:
                    parts.append(("speech", _plain(part)))
            script.speech(stripped.lstrip("@").rstrip("^").strip(), parts, dual=stripped.endswith("^"))
        else:
            paragraph = [stripped.removeprefix("!").removeprefix("~")]
            while index < len(lines) and lines[index].strip() and not _PAGE_BREAK.match(lines[index].strip()):
                paragraph.append(lines[index].strip().removeprefix("!").removeprefix("~"))
                index += 1
            script.action(_plain("\n".join(paragraph)))
        previous_blank = False


# --- Final Draft ----------------------------------------------------------------------------------------


def parse_xml(data: bytes) -> ElementTree.Element:
    """The document's root element; a DTD (where entities would be declared) is refused outright."""

    def refuse_dtd(*_: object) -> NoReturn:
        raise InvalidInput("the XML declares a DTD; DTDs and entities are not accepted")

    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.ExternalEntityRefHandler = refuse_dtd
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise InvalidInput(
            f"the XML is not well-formed ({expat.errors.messages[error.code]}, line {error.lineno})"
        ) from None
    return builder.close()


def fdx_sections(data: bytes) -> list[Section]:
    root = parse_xml(data)
    if root.tag != "FinalDraft":
        raise InvalidInput(f"not a Final Draft document: the root element is <{root.tag}>, not <FinalDraft>")
    content = root.find("Content")
    if content is None:
        raise InvalidInput("the Final Draft document has no <Content>")
    script = _Script()
    title_lines = [_fdx_text(paragraph) for paragraph in root.iterfind("TitlePage/Content/Paragraph")]
    script.title_page("\n".join(line for line in title_lines if line.strip()))
    _fdx_paragraphs(list(content.iterfind("Paragraph")), script, dual=False)
    return script.finish()


def _fdx_text(paragraph: ElementTree.Element) -> str:
    """The paragraph's own text runs (not those of the scene properties nested inside it)."""
    return "".join("".join(run.itertext()) for run in paragraph.iterfind("Text")).strip()


def _fdx_paragraphs(paragraphs: list[ElementTree.Element], script: _Script, *, dual: bool) -> None:
    index = 0
    first_speech_of_pair = True
    while index < len(paragraphs):
        paragraph = paragraphs[index]
        index += 1
        pair = paragraph.find("DualDialogue")
        if pair is not None:
            if dual:
                # Final Draft writes a pair of speeches side by side, never a pair inside a pair; a file
                # that nests them (thousands deep, to exhaust the stack) is not a script.
                raise InvalidInput("the Final Draft document nests a DualDialogue inside a DualDialogue")
            _fdx_paragraphs(list(pair.iterfind("Paragraph")), script, dual=True)
            continue
        kind = paragraph.get("Type", "Action")
        text = _fdx_text(paragraph)
        if kind == "Scene Heading":
            properties = paragraph.find("SceneProperties")
            page = properties.get("Page", "") if properties is not None else ""
            script.heading(text, number=paragraph.get("Number", ""), page=int(page) if page.isdigit() else None)
        elif kind == "Character":
            parts: list[Part] = []
            while index < len(paragraphs) and paragraphs[index].get("Type") in ("Dialogue", "Parenthetical"):
                part_kind: Literal["parenthetical", "speech"] = (
                    "parenthetical" if paragraphs[index].get("Type") == "Parenthetical" else "speech"
                )
                parts.append((part_kind, _fdx_text(paragraphs[index])))
                index += 1
            # In a pair the second speaker is the dual one; the builder marks the first as well.
            script.speech(text, parts, dual=dual and not first_speech_of_pair)
            first_speech_of_pair = not first_speech_of_pair if dual else True
        elif kind == "Transition":
            script.transition(text)
        elif text:
            script.action(text)


# --- A PDF of a script ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageLine:
    """One printed line of a PDF page: where it starts (points from the left edge), its baseline."""

    x: float
    y: float
    text: str


MIN_PDF_SCENES = 3  # fewer scene headings than this and a PDF is read as pages, not as a script
_DIALOGUE_INDENT = 36.0  # points right of the action margin where dialogue begins (it sits at ~72)
_CUE_INDENT = 130.0  # … cues (at ~158; parentheticals at ~108 are told by their brackets)
_TRANSITION_INDENT = 250.0  # … transitions (CUT TO: at ~288 or right-aligned)
_PDF_NUMBERED_HEADING = re.compile(r"^(?P<number>\d+[A-Z]{0,2})\.?\s+(?P<heading>.+?)(?:\s+(?P=number)\.?)?$")
_PDF_FURNITURE = re.compile(r"^(?:\d+[A-Z]?\.?|\(MORE\)|\(?CONTINUED\)?:?(?:\s*\(\d+\))?|\d+\s+CONTINUED:?)$", re.I)


def script_sections(pages: Sequence[Sequence[PageLine]]) -> list[Section] | None:
    """The pages of a PDF as a screenplay's sections, or None when they do not read as a script
    (fewer than MIN_PDF_SCENES scene headings at the action margin, or no character speaks)."""
    lines = [line for page in pages for line in page if not _PDF_FURNITURE.match(line.text.strip())]
    long_lines = Counter(round(line.x) for line in lines if len(line.text.strip()) > 40)
    if not long_lines:
        return None
    margin = long_lines.most_common(1)[0][0]
    headings = sum(1 for line in lines if line.x - margin < _DIALOGUE_INDENT and _pdf_heading(line.text))
    cues = sum(1 for line in lines if _CUE_INDENT <= line.x - margin < _TRANSITION_INDENT and _is_cue(line.text))
    if headings < MIN_PDF_SCENES or not cues:
        return None
    script = _Script()
    first_scene_page = next(
        index
        for index, page in enumerate(pages)
        if any(line.x - margin < _DIALOGUE_INDENT and _pdf_heading(line.text) for line in page)
    )
    # A sparse first page without scenes or dialogue before the script proper is its (unnumbered) title page.
    title_pages = 1 if first_scene_page > 0 and _is_title_page(pages[0], margin) else 0
    if title_pages:
        script.title_page("\n".join(line.text.strip() for line in pages[0]))
    for number, page in enumerate(pages[title_pages:], 1):
        script.turn_to_page(number)
        _pdf_page(page, margin, script)
    return script.finish()


def _pdf_heading(text: str) -> tuple[str, str] | None:
    """(scene number or "", heading) when the line is a scene heading, its printed numbers removed.
    A numbered line in capitals is one even without INT./EXT. (a forced heading): programs number
    only scene headings."""
    stripped = " ".join(text.split())
    numbered = _PDF_NUMBERED_HEADING.match(stripped)
    if numbered:
        heading = numbered.group("heading")
        if _SCENE_PREFIX.match(heading) or (heading.isupper() and any(char.isalpha() for char in heading)):
            return numbered.group("number"), heading
    return ("", stripped) if _SCENE_PREFIX.match(stripped) else None


def _is_title_page(page: Sequence[PageLine], margin: float) -> bool:
    return len(page) <= 20 and not any(_DIALOGUE_INDENT <= line.x - margin < _CUE_INDENT for line in page)


def _pdf_page(page: Sequence[PageLine], margin: float, script: _Script) -> None:
    """One page's lines as script elements: a blank line is a gap of more than one line's height."""
    paragraph: list[str] = []
    speech: tuple[str, list[Part]] | None = None
    previous_y: float | None = None

    def flush() -> None:
        nonlocal speech
        if paragraph:
            script.action("\n".join(paragraph))
            paragraph.clear()
        if speech is not None:
            script.speech(speech[0], speech[1])
            speech = None

    for line in page:
        text = " ".join(line.text.split())
        if not text or _PDF_FURNITURE.match(text):
            continue
        gap = previous_y is not None and previous_y - line.y > 18  # 12 pt type: a line is 12 pt
        previous_y = line.y
        indent = line.x - margin
        if gap:
            flush()
        if indent < _DIALOGUE_INDENT:
            if heading := _pdf_heading(text):
                flush()
                script.heading(heading[1], number=heading[0], forced=not _SCENE_PREFIX.match(heading[1]))
            else:
                if speech is not None:
                    flush()
                paragraph.append(text)
        elif indent >= _TRANSITION_INDENT or (indent >= _CUE_INDENT and _is_transition(text)):
            flush()
            script.transition(text)
        elif indent >= _CUE_INDENT and _is_cue(text):
            flush()
            speech = (text, [])
        elif speech is not None:
            speech[1].append(("parenthetical" if text.startswith("(") else "speech", text))
        else:
            paragraph.append(text)  # indented text outside a speech (a centred line, a lyric)
    flush()
