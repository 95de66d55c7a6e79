"""Prompt caching that pays: a scripted 10-turn conversation about a real screenplay, each turn's
prompt built as chat-svc builds it and sent by chat-svc's `AnthropicProvider` (the official SDK)
to `tests.fakes.FakeAnthropic`, which caches prompts as Anthropic documents (byte-identical
prefixes ending at a breakpoint or within the 20-block lookback, 1,024-token minimum for Sonnet).

`.venv/bin/python -m bench.cache` from the repository root; `run(quick=...)` is bench/run.py's interface. No timing: the
figures are token counts, the same on every machine.

The screenplay (`../shared/data/screenplays/The-Last-Birthday-Card.fountain`) is split into
scenes by ingestion's own parser; each question retrieves the 10 scenes sharing the most rare
words with it (a stand-in for retrieval-svc: what matters here is that follow-ups overlap the
way real ones do). Then, as a turn does: `build_prompt` at the standard tier with the last
answer's passages carried first and the last 10 messages, and one streamed call.

Printed per turn: uncached input, cache write, cache read and output tokens and the cost at
Claude Sonnet's prices; then the share of input read from cache over turns 2–10, the same
conversation's cost without caching, and a user-month of 50 queries (five such conversations).
"""

import asyncio
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench._common import Table
from parley.chat.context_builder import Turn, build_prompt, history_window
from parley.chat.provider_anthropic import AnthropicProvider
from parley.chat.providers import Finished
from parley.ingestion.screenplay import fountain_sections
from parley.kit.contracts import tier_budget
from parley.v1 import chat_pb2, common_pb2, retrieval_pb2
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.scripting import Script

ROOT = Path(__file__).resolve().parent.parent
SCREENPLAY = ROOT.parent / "shared" / "data" / "screenplays" / "The-Last-Birthday-Card.fountain"
MODEL = "claude-sonnet-4-6"
K = 10  # chat-svc's semantic_k
HISTORY_MESSAGES = 10  # chat-svc's history_messages
MAX_TOKENS = 400
QUERIES_PER_MONTH = 50
# Claude Sonnet, USD per million tokens.
INPUT_USD, OUTPUT_USD, CACHE_READ_USD, CACHE_WRITE_USD = 3.00, 15.00, 0.30, 3.75

QUESTIONS = (
    "Who are Scott and Baxter, and what do they do for a living?",
    "What is Scott painting in his apartment at the start, and is he any good at it?",
    "Why does Baxter come over to Scott's apartment, and what job do they get?",
    "What happens when they reach the Palace Hotel and room 412?",
    "What goes wrong for Scott in the bathroom of room 412?",
    "How does the Southern Exposure gallery change how Scott sees his paintings?",
    "What does the boss want from Scott and Baxter after the hotel job?",
    "What are Scott and Baxter watching on the TV while they drink beer?",
    "What happens at the scenic overlook with Nak, the Mazda and the truck?",
    "How does the story end for Scott in his new apartment?",
)
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True, slots=True)
class TurnCost:
    usage: common_pb2.TokenUsage

    @property
    def prompt_tokens(self) -> int:
        return self.usage.input_tokens + self.usage.cache_read_tokens + self.usage.cache_write_tokens

    @property
    def usd(self) -> float:
        u = self.usage
        return (
            u.input_tokens * INPUT_USD
            + u.cache_write_tokens * CACHE_WRITE_USD
            + u.cache_read_tokens * CACHE_READ_USD
            + u.output_tokens * OUTPUT_USD
        ) / 1e6

    @property
    def usd_uncached(self) -> float:
        return (self.prompt_tokens * INPUT_USD + self.usage.output_tokens * OUTPUT_USD) / 1e6


def scenes() -> list[retrieval_pb2.ChunkHit]:
    sections = fountain_sections(SCREENPLAY.read_text(encoding="utf-8"))
    return [
        retrieval_pb2.ChunkHit(
            chunk_id=f"scene-{section.ordinal}",
            document_id="the-last-birthday-card",
            document_title="The Last Birthday Card",
            ordinal=section.ordinal,
            heading=section.heading_label,
            text=section.text,
        )
        for section in sections
        if section.text.strip()
    ]


class Retriever:
    """The K scenes sharing the most rare words with the question (tf-idf overlap)."""

    def __init__(self, chunks: list[retrieval_pb2.ChunkHit]) -> None:
        self._chunks = chunks
        self._terms = [Counter(_WORD.findall(chunk.text.lower())) for chunk in chunks]
        documents = Counter(term for terms in self._terms for term in terms)
        self._idf = {term: math.log(len(chunks) / count) for term, count in documents.items()}

    def search(self, question: str) -> list[retrieval_pb2.ChunkHit]:
        asked = set(_WORD.findall(question.lower()))
        scored = [
            (sum(self._idf.get(term, 0.0) * math.log1p(terms[term]) for term in asked), -index)
            for index, terms in enumerate(self._terms)
        ]
        best = sorted(scored, reverse=True)[:K]
        return [self._chunks[-index] for score, index in best if score > 0]


def answer_for(turn: int, question: str) -> str:
    """A plausible answer of about 150 tokens, different every turn."""
    return f"Turn {turn}. {question.rstrip('?')}: the passages answer it directly [1]. " + " ".join(
        f"Point {n}: the scene shows this through action and dialogue rather than exposition [{n}]."
        for n in range(1, 9)
    )


async def converse(fake: FakeAnthropic) -> list[TurnCost]:
    claude = AnthropicProvider(api_key=fake.api_key, base_url=fake.base_url, default_model=MODEL)
    retriever = Retriever(scenes())
    history: list[Turn] = []
    carried: list[retrieval_pb2.ChunkHit] = []
    costs: list[TurnCost] = []
    try:
        for turn, question in enumerate(QUESTIONS, start=1):
            prompt = build_prompt(
                question=question,
                hits=retriever.search(question),
                carried=carried,
                history=history_window(history[-HISTORY_MESSAGES:], total=len(history), last=HISTORY_MESSAGES),
                budget=tier_budget(chat_pb2.TIER_STANDARD),
            )
            said = answer_for(turn, question)
            fake.script(Script(answer=said))
            finished: Finished | None = None
            async for event in claude.stream(prompt, model=MODEL, max_tokens=MAX_TOKENS):
                if isinstance(event, Finished):
                    finished = event
            assert finished is not None
            costs.append(TurnCost(finished.usage))
            history += [Turn("user", question), Turn("assistant", said)]
            # As chat-svc does from the stored answer: its carried passages, or all when none was.
            carried = [passage.hit for passage in prompt.carried or prompt.passages]
    finally:
        await claude.close()
    return costs


def run(*, quick: bool = False) -> Table:
    with FakeAnthropic() as fake:
        costs = asyncio.run(converse(fake))
    table = Table(
        f"cache — a 10-turn conversation about a screenplay, {MODEL} prices, standard tier",
        ("turn", "input", "cache write", "cache read", "output", "read share", "cost USD", "uncached USD"),
    )
    for turn, cost in enumerate(costs, start=1):
        u = cost.usage
        table.add(
            turn,
            f"{u.input_tokens:,}",
            f"{u.cache_write_tokens:,}",
            f"{u.cache_read_tokens:,}",
            f"{u.output_tokens:,}",
            f"{u.cache_read_tokens / cost.prompt_tokens:.0%}",
            f"{cost.usd:.4f}",
            f"{cost.usd_uncached:.4f}",
        )
    later = costs[1:]
    read_share = sum(c.usage.cache_read_tokens for c in later) / sum(c.prompt_tokens for c in later)
    total, uncached = sum(c.usd for c in costs), sum(c.usd_uncached for c in costs)
    per_query = total / len(costs)
    table.add(
        "all",
        f"{sum(c.usage.input_tokens for c in costs):,}",
        f"{sum(c.usage.cache_write_tokens for c in costs):,}",
        f"{sum(c.usage.cache_read_tokens for c in costs):,}",
        f"{sum(c.usage.output_tokens for c in costs):,}",
        f"{read_share:.0%} (2–10)",
        f"{total:.4f}",
        f"{uncached:.4f}",
    )
    table.notes.extend(
        [
            f"input tokens read from cache over turns 2–10: {read_share:.1%} (target ≥ 80 %)",
            f"the conversation costs ${total:.4f} with caching, ${uncached:.4f} without "
            f"({1 - total / uncached:.0%} less)",
            f"a user-month of {QUERIES_PER_MONTH} queries (five such conversations): "
            f"${per_query * QUERIES_PER_MONTH:.2f} (target < $1), "
            f"${uncached / len(costs) * QUERIES_PER_MONTH:.2f} uncached",
            "prices per MTok: input $3, output $15, cache read $0.30, cache write $3.75; "
            "each turn within the 5-minute TTL",
        ]
    )
    return table


if __name__ == "__main__":
    print(run().render())
