"""Retrieval's offline embedder (`parley.retrieval.embeddings.LocalEmbedder`): texts embedded
per second, in batches of 32 chunk-sized texts (about 250 tokens each), median of several runs.

Compared in the same run: a batch of 64, which `LocalEmbedder.embed` hands to a worker thread
(batches over 32 do), and a short query-sized text, the embedding every vector search pays.
"""

import asyncio
import time

from bench._common import Table, median, p95, rate
from bench.corpus import passages
from parley.retrieval.embeddings import LocalEmbedder


def run(*, quick: bool = False) -> Table:
    """Times `await LocalEmbedder().embed(batch)` for batches of 32 and 64 texts and of one query."""
    return asyncio.run(_run(quick=quick))


async def _time(embedder: LocalEmbedder, batches: list[list[str]]) -> list[float]:
    await embedder.embed(batches[0])  # warm-up
    samples: list[float] = []
    for batch in batches:
        started = time.perf_counter()
        await embedder.embed(batch)
        samples.append(time.perf_counter() - started)
    return samples


async def _run(*, quick: bool) -> Table:
    embedder = LocalEmbedder()
    runs = 5 if quick else 15
    texts = passages(64 * runs)
    chars = sum(map(len, texts)) / len(texts)
    table = Table(
        "embedding — parley.retrieval.embeddings.LocalEmbedder",
        ("batch", "median ms / batch", "p95 ms / batch", "texts/s (median)", "µs / text"),
    )
    for size in (32, 64):
        batches = [texts[i * size : (i + 1) * size] for i in range(runs)]
        samples = await _time(embedder, batches)
        per_text = median(samples) / size
        table.add(
            f"{size} chunk-sized texts" + (" (worker thread)" if size > 32 else ""),
            f"{median(samples) * 1000:.2f}",
            f"{p95(samples) * 1000:.2f}",
            rate(size, median(samples)),
            f"{per_text * 1e6:.0f}",
        )
    queries = [["how often should I descale the boiler"] for _ in range(runs * 10)]
    samples = await _time(embedder, queries)
    table.add(
        "1 query (7 words)",
        f"{median(samples) * 1000:.3f}",
        f"{p95(samples) * 1000:.3f}",
        rate(1, median(samples)),
        f"{median(samples) * 1e6:.0f}",
    )
    table.notes.append(f"texts average {chars:,.0f} characters; {runs} timed batches per size after 1 warm-up")
    return table
