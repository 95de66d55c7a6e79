"""Ingestion's pure chunker (`markdown_sections` then `chunk_sections`) on a generated ~200 KB
Markdown document: document tokens (cl100k) chunked per second, median of several runs.

Compared in the same run with the floor under it: tiktoken encoding the whole document once
(`count_tokens`), which is the least any token-exact chunker must do.
"""

from functools import partial

from bench._common import Table, median, ms, p95, rate, repeat
from bench.corpus import markdown_document
from parley.kit.tokens import count_tokens

DOCUMENT_BYTES = 200_000


def run(*, quick: bool = False) -> Table:
    """Times sectioning + chunking (markdown, max_tokens 300 and 800) and one plain encode of the document."""
    from parley.ingestion.sections import (
        chunk_sections,
        markdown_sections,
    )  # imported here: the service may be mid-edit

    document = markdown_document(DOCUMENT_BYTES)
    tokens = count_tokens(document)
    times = 3 if quick else 7
    table = Table(
        "chunking — markdown_sections + chunk_sections, ~200 KB Markdown",
        ("case", "chunks", "median ms", "p95 ms", "tokens/s (median)", "× encode"),
    )
    floor = repeat(lambda: count_tokens(document), times=times)
    table.add(
        "tiktoken encode once (floor)", "-", ms(median(floor)), ms(p95(floor)), rate(tokens, median(floor)), "1.0"
    )

    def chunk(max_tokens: int) -> object:
        return chunk_sections(markdown_sections(document), max_tokens=max_tokens)

    for max_tokens in (300, 800):
        chunks = chunk_sections(markdown_sections(document), max_tokens=max_tokens)
        samples = repeat(partial(chunk, max_tokens), times=times)
        table.add(
            f"markdown sections + chunks, max_tokens={max_tokens}",
            len(chunks),
            ms(median(samples)),
            ms(p95(samples)),
            rate(tokens, median(samples)),
            f"{median(samples) / median(floor):.1f}",
        )
    table.notes.append(
        f"document: {len(document.encode()):,} bytes, {tokens:,} tokens (cl100k); {times} timed runs after 1 warm-up"
    )
    return table
