"""Splitting one section's text into token-sized pieces, and telling Markdown headings from text.

A section's paragraphs are packed into pieces of at most `max_tokens` (cl100k, as the models
count them); a paragraph too long on its own is cut at sentence ends, and a sentence too long
on its own at token boundaries. A fenced code block stays whole and never holds a heading.
Pure and deterministic: the same text always yields the same pieces.
"""

import re
from collections.abc import Iterable, Iterator

from parley.kit.tokens import count_tokens, encoding

HEADING_SEPARATOR = " › "
PARAGRAPH_SEPARATOR = "\n\n"

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# Western sentence ends need the space after them ("3.5" is not an end); CJK ones stand alone.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|(?<=[。！？])\s*")


def split_text(text: str, *, max_tokens: int) -> list[str]:
    """`text`'s paragraphs packed into pieces of at most `max_tokens`."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    return list(_pack(_paragraphs(text.replace("\r\n", "\n").replace("\r", "\n").split("\n")), max_tokens))


def headings_and_lines(lines: list[str]) -> Iterator[tuple[tuple[int, str] | None, str]]:
    """Each line, with (level, title) when it is a heading. A setext heading's text line is
    held back until we know whether an underline follows it."""
    fence = ""
    pending: str | None = None  # a lone paragraph line that a setext underline could turn into a heading
    previous_blank = True
    for line in lines:
        fence_match = _FENCE.match(line)
        if fence:
            if fence_match and fence_match.group(1)[0] == fence[0] and len(fence_match.group(1)) >= len(fence):
                fence = ""
            yield None, line
            continue
        if pending is not None:
            setext = _SETEXT.match(line)
            if setext:
                yield (1 if setext.group(1)[0] == "=" else 2, pending.strip()), pending
                pending = None
                previous_blank = True
                continue
            yield None, pending
            pending = None
        if fence_match:
            fence = fence_match.group(1)
            yield None, line
            previous_blank = False
            continue
        atx = _ATX.match(line)
        if atx:
            yield (len(atx.group(1)), (atx.group(2) or "").strip()), line
            previous_blank = True
            continue
        if previous_blank and line.strip():
            pending = line
            previous_blank = False
            continue
        previous_blank = not line.strip()
        yield None, line
    if pending is not None:
        yield None, pending


def _paragraphs(lines: list[str]) -> list[str]:
    """Blocks separated by blank lines; a fenced code block stays whole, blank lines included."""
    paragraphs: list[str] = []
    current: list[str] = []
    fence = ""
    for line in lines:
        fence_match = _FENCE.match(line)
        if fence:
            current.append(line)
            if fence_match and fence_match.group(1)[0] == fence[0] and len(fence_match.group(1)) >= len(fence):
                fence = ""
            continue
        if fence_match:
            fence = fence_match.group(1)
            current.append(line)
            continue
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current).strip())
            current = []
    if current:
        paragraphs.append("\n".join(current).strip())
    return [paragraph for paragraph in paragraphs if paragraph]


def _pack(paragraphs: list[str], max_tokens: int) -> Iterator[str]:
    """Paragraphs packed greedily into chunks; one longer than a chunk is split first."""
    pieces = (piece for paragraph in paragraphs for piece in _fit(paragraph, max_tokens))
    yield from _greedy(pieces, PARAGRAPH_SEPARATOR, max_tokens)


def _fit(text: str, max_tokens: int) -> Iterator[str]:
    """`text` whole if it fits, else its sentences packed together, else token slices."""
    if count_tokens(text) <= max_tokens:
        yield text
        return
    pieces = (
        piece
        for sentence in _sentences(text)
        for piece in ([sentence] if count_tokens(sentence) <= max_tokens else _token_slices(sentence, max_tokens))
    )
    yield from _greedy(pieces, " ", max_tokens)


def _greedy(pieces: Iterable[str], separator: str, max_tokens: int) -> Iterator[str]:
    """Join pieces while the joined text fits, measured on the joined text itself so the limit holds exactly."""
    current = ""
    for piece in pieces:
        candidate = f"{current}{separator}{piece}" if current else piece
        if count_tokens(candidate) <= max_tokens:
            current = candidate
            continue
        if current:
            yield current
        current = piece
    if current:
        yield current


def _sentences(text: str) -> list[str]:
    return [sentence.strip() for sentence in _SENTENCE_END.split(text) if sentence.strip()]


def _token_slices(text: str, max_tokens: int) -> Iterator[str]:
    """Cut at token boundaries, backing off where a cut would split a character or where the
    slice, encoded again on its own, would come out longer than the limit."""
    tokens = encoding().encode(text, disallowed_special=())
    start = 0
    while start < len(tokens):
        end = min(start + max_tokens, len(tokens))
        while True:
            try:
                piece = encoding().decode_bytes(tokens[start:end]).decode("utf-8")
            except UnicodeDecodeError:
                piece = None
            if piece is not None and (count_tokens(piece.strip()) <= max_tokens or end - start == 1):
                break
            if end - start == 1:
                # A single token that is not a whole character: take the smallest run that is.
                end = _next_character_boundary(tokens, start)
                piece = encoding().decode_bytes(tokens[start:end]).decode("utf-8", errors="replace")
                break
            end -= 1
        if piece.strip():
            yield piece.strip()
        start = end


def _next_character_boundary(tokens: list[int], start: int) -> int:
    for end in range(start + 1, len(tokens) + 1):
        try:
            encoding().decode_bytes(tokens[start:end]).decode("utf-8")
        except UnicodeDecodeError:
            continue
        return end
    return len(tokens)
