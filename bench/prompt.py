"""chat-svc's context builder (`parley.chat.context_builder.build_prompt`): milliseconds to
build the prompt of a turn from 20 retrieval hits at the standard tier (5,000 tokens), median
and p95 of many builds. DESIGN's target for context assembly is under 50 ms.

Compared in the same run: hits without `token_count` (the builder counts them itself), ten
turns of history, and `LocalProvider.count_tokens(prompt)` (which a turn calls to price its budget
hold and the local provider for usage, re-encoding the whole prompt once more).
"""

import uuid
from functools import partial

from bench._common import Table, median, ms, p95, repeat
from bench.corpus import paragraph, passages
from parley.chat.context_builder import Turn, build_prompt
from parley.chat.providers import LocalProvider
from parley.kit.contracts import tier_budget
from parley.kit.tokens import count_tokens
from parley.v1 import chat_pb2, retrieval_pb2

QUESTION = "How often should I descale the boiler, and what should I use for it?"
HITS = 20
LOCAL = LocalProvider()


def _hits(*, with_counts: bool) -> list[retrieval_pb2.ChunkHit]:
    document_id = str(uuid.UUID(int=1))
    return [
        retrieval_pb2.ChunkHit(
            chunk_id=str(uuid.UUID(int=100 + i)),
            document_id=document_id,
            collection_id=str(uuid.UUID(int=2)),
            document_title="Espresso machine service manual",
            ordinal=i,
            heading=f"Chapter {i // 4 + 1} › Section {i}",
            text=text,
            token_count=count_tokens(text) if with_counts else 0,
            score=1.0 - i / 100,
        )
        for i, text in enumerate(passages(HITS, seed=23, sentences=(11, 15)))
    ]


def _history() -> list[Turn]:
    import random

    rng = random.Random(5)
    return [
        Turn(role="user" if i % 2 == 0 else "assistant", content=paragraph(rng, sentences=(1, 4))) for i in range(10)
    ]


def run(*, quick: bool = False) -> Table:
    """Times build_prompt (and build_prompt + input_tokens) over the same 20 hits, 200 times each."""
    times = 50 if quick else 200
    budget = tier_budget(chat_pb2.TIER_STANDARD)
    counted, uncounted, history = _hits(with_counts=True), _hits(with_counts=False), _history()
    table = Table(
        f"prompt — parley.chat.context_builder.build_prompt, {HITS} hits, standard tier ({budget:,} tokens)",
        ("case", "passages kept", "prompt tokens", "median ms", "p95 ms"),
    )
    cases = [
        ("hits with token_count (as retrieval sends them)", counted, []),
        ("hits without token_count (builder counts)", uncounted, []),
        ("with token_count + 10 turns of history", counted, history),
    ]
    for name, hits, turns in cases:
        prompt = build_prompt(question=QUESTION, hits=hits, history=turns, budget=budget)
        samples = repeat(partial(build_prompt, question=QUESTION, hits=hits, history=turns, budget=budget), times=times)
        table.add(
            name,
            len(prompt.passages),
            f"{LOCAL.count_tokens(prompt, model='local'):,}",
            ms(median(samples), 3),
            ms(p95(samples), 3),
        )

    def build_and_count() -> int:
        prompt = build_prompt(question=QUESTION, hits=counted, history=history, budget=budget)
        return LOCAL.count_tokens(prompt, model="local")

    samples = repeat(build_and_count, times=times)
    table.add(
        "… + LocalProvider.count_tokens (what a turn holds and pays)",
        "-",
        "-",
        ms(median(samples), 3),
        ms(p95(samples), 3),
    )
    hit_tokens = sum(hit.token_count for hit in counted)
    table.notes.append(
        f"{HITS} hits of {hit_tokens / HITS:,.0f} tokens on average ({hit_tokens:,} in all); {times} builds each"
    )
    return table
