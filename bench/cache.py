"""Prompt caching on the path users take: a feature-length screenplay uploaded to the whole
platform (`parley.kit.devstack.Platform`: real ingestion, retrieval, chat and usage, as `make run`
starts them), then ten questions of every intent in one conversation through `POST /v1/chat`,
answered by Claude Sonnet — chat-svc's `AnthropicProvider` (the official SDK) pointed at
`tests.fakes.FakeAnthropic`, which caches prompts as Anthropic documents (byte-identical prefixes
ending at a breakpoint or within the 20-block lookback, 1,024-token minimum for Sonnet).

`.venv/bin/python -m bench.cache` from the repository root; `run(quick=...)` is bench/run.py's
interface. No timing: the figures are token counts, the same on every machine.

The script is the one `bench.ingest` grows from ../shared/data/screenplays (120 pages); the
`local` writer writes its artifacts offline (scene cards, outline, character sheets, plot
threads), so the global context is what a self-hosted install without a model key gets. The
questions cover every intent — question, global_question, brainstorm, section_feedback and
local_edit (with the section a previous answer cited open), and one the model answers with a
tool round (`get_character_scenes`). Each answer is about 150 tokens (`answer_for`).

Printed per turn: intent, uncached input, cache write, cache read and output tokens as chat-svc
stored them (the usage the fake reported; a tool turn's two calls together) and the cost at
Sonnet's prices; then the share of input read from cache over turns 2–10, the same conversation
uncached, and a user-month of 50 questions (five such conversations). Skipped, with a message,
when ../shared/data is not there.
"""

import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench._common import Table
from bench.end_to_end import running_platform
from bench.ingest import DATA, feature_screenplay
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.scripting import Script

MODEL = "claude-sonnet-4-6"
MAX_TOKENS = 400
QUERIES_PER_MONTH = 50
READY_WITHIN = 900.0
# Claude Sonnet, USD per million tokens.
INPUT_USD, OUTPUT_USD, CACHE_READ_USD, CACHE_WRITE_USD = 3.00, 15.00, 0.30, 3.75


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    intent: str = ""  # empty: chat-svc decides (keywords)
    open_section: bool = False  # with the first passage the last answer cited open
    tool: tuple[str, dict[str, Any]] | None = None  # the model calls this tool first


QUESTIONS = (
    Question("Who are Scott and Baxter, and what do they do for a living?"),
    Question("What is the overall structure of the whole script, and which themes does it land?"),
    Question("Which scenes does SCOTT 1 appear in?", tool=("get_character_scenes", {"character": "SCOTT 1"})),
    Question("What happens when they reach the Palace Hotel and room 412?"),
    Question("Feedback on this scene: does the scene work?", intent="section_feedback", open_section=True),
    Question("Rewrite this scene to make it tighter.", intent="local_edit", open_section=True),
    Question("Brainstorm ideas for a stronger ending."),
    Question("How does the Southern Exposure gallery change how Scott sees his paintings?"),
    Question("What is the main characters' arc across the entire story?"),
    Question("How does the story end for Scott in his new apartment?"),
)


@dataclass(frozen=True, slots=True)
class TurnCost:
    intent: str
    usage: dict[str, int]
    global_tokens: int

    @property
    def prompt_tokens(self) -> int:
        u = self.usage
        return u["input_tokens"] + u["cache_read_tokens"] + u["cache_write_tokens"]

    @property
    def usd(self) -> float:
        u = self.usage
        return (
            u["input_tokens"] * INPUT_USD
            + u["cache_write_tokens"] * CACHE_WRITE_USD
            + u["cache_read_tokens"] * CACHE_READ_USD
            + u["output_tokens"] * OUTPUT_USD
        ) / 1e6

    @property
    def usd_uncached(self) -> float:
        return (self.prompt_tokens * INPUT_USD + self.usage["output_tokens"] * OUTPUT_USD) / 1e6


def answer_for(turn: int, question: str) -> str:
    """A plausible answer of about 150 tokens, different every turn."""
    return f"Turn {turn}. {question.rstrip('?')}: the passages answer it directly [1]. " + " ".join(
        f"Point {n}: the scene shows this through action and dialogue rather than exposition [{n}]."
        for n in range(1, 9)
    )


def _ready(client: httpx.Client, document_id: str) -> None:
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        document = client.get(f"/v1/documents/{document_id}").json()
        if document["status"] == "ready":
            return
        if document["status"] == "failed":
            raise RuntimeError(f"ingestion failed: {document}")
        time.sleep(0.5)
    raise TimeoutError(f"document {document_id} not ready after {READY_WITHIN:.0f}s")


def converse(fake: FakeAnthropic, client: httpx.Client) -> list[TurnCost]:
    script, _ = feature_screenplay()
    collection = client.post("/v1/collections", json={"name": "cache bench"})
    collection.raise_for_status()
    collection_id = collection.json()["id"]
    uploaded = client.post(
        f"/v1/collections/{collection_id}/documents",
        files={"file": ("feature.fountain", script.encode(), "text/x-fountain")},
    )
    uploaded.raise_for_status()
    _ready(client, uploaded.json()["id"])

    costs: list[TurnCost] = []
    conversation_id = ""
    open_section = ""
    for turn, question in enumerate(QUESTIONS, start=1):
        if question.tool is not None:
            fake.script(Script.call(question.tool))
        fake.script(Script(answer=answer_for(turn, question.text)))
        body: dict[str, Any] = {
            "message": question.text,
            "tier": "standard",
            "max_tokens": MAX_TOKENS,
            "provider": "anthropic",
            "model": MODEL,
        }
        body |= {"conversation_id": conversation_id} if conversation_id else {"collection_ids": [collection_id]}
        if question.intent:
            body["intent"] = question.intent
        if question.open_section and open_section:
            body["current_section_id"] = open_section
        answered = client.post("/v1/chat", json=body)
        answered.raise_for_status()
        reply = answered.json()
        conversation_id = reply["conversation_id"]
        message = reply["message"]
        used = message["context_used"]
        parts = {part["name"]: part["tokens"] for part in used["parts"]}
        costs.append(TurnCost(used["intent"], message["usage"], parts.get("global", 0)))
        if message["sources"]:
            open_section = message["sources"][0]["chunk_id"]
    return costs


def run(*, quick: bool = False) -> list[Table]:
    if not (DATA / "screenplays").is_dir():
        print(f"(cache: skipped, {DATA / 'screenplays'} is not there)", flush=True)
        return []
    with FakeAnthropic() as fake:
        settings = {
            "PARLEY_ANTHROPIC_API_KEY": fake.api_key,
            "PARLEY_ANTHROPIC_BASE_URL": fake.base_url,
            # One user asking ten questions as fast as the bench can: past the default 8 a minute.
            "PARLEY_RATE_CHAT_REQUESTS_PER_MINUTE": "1000",
            "PARLEY_RATE_LLM_TOKENS_PER_MINUTE": "10000000",
        }
        with running_platform(settings) as (platform, _):
            assert platform.secrets is not None
            headers = {"Authorization": f"Bearer {platform.secrets.admin_api_key}"}
            with httpx.Client(base_url=platform.gateway_url, headers=headers, timeout=120) as client:
                costs = converse(fake, client)
    return [_table(costs)]


def _table(costs: list[TurnCost]) -> Table:
    table = Table(
        f"cache — ten questions about a feature screenplay through the platform, {MODEL} prices, standard tier",
        ("turn", "intent", "global", "input", "cache write", "cache read", "output", "read share", "cost USD"),
    )
    for turn, cost in enumerate(costs, start=1):
        u = cost.usage
        table.add(
            turn,
            cost.intent,
            f"{cost.global_tokens:,}",
            f"{u['input_tokens']:,}",
            f"{u['cache_write_tokens']:,}",
            f"{u['cache_read_tokens']:,}",
            f"{u['output_tokens']:,}",
            f"{u['cache_read_tokens'] / cost.prompt_tokens:.0%}",
            f"{cost.usd:.4f}",
        )
    later = costs[1:]
    read_share = sum(c.usage["cache_read_tokens"] for c in later) / sum(c.prompt_tokens for c in later)
    total, uncached = sum(c.usd for c in costs), sum(c.usd_uncached for c in costs)
    per_query = total / len(costs)
    table.notes.extend(
        [
            f"input tokens read from cache over turns 2–10: {read_share:.1%} (target ≥ 85 %)",
            f"the conversation costs ${total:.4f} with caching, ${uncached:.4f} without "
            f"({1 - total / uncached:.0%} less)",
            f"a user-month of {QUERIES_PER_MONTH} questions (five such conversations): "
            f"${per_query * QUERIES_PER_MONTH:.2f} (target < $0.50), "
            f"${uncached / len(costs) * QUERIES_PER_MONTH:.2f} uncached",
            "prices per MTok: input $3, output $15, cache read $0.30, cache write $3.75; "
            "each turn within the 5-minute TTL",
        ]
    )
    return table


if __name__ == "__main__":
    for table in run():
        print(table.render())
