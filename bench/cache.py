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

Printed per turn: intent, uncached input, cache write (and how much of it for an hour), cache
read and output tokens as chat-svc stored them (the usage the fake reported; a tool turn's two
calls together), and the turn's cost **from usage-svc's ledger** (`GET /v1/usage`, grouped by
kind: what the `chat` usage events of the turn were billed, at the price table's Sonnet row); then
the share of input read from cache over turns 2–10, the same conversation uncached (its tokens at
the input price), what the ledger billed by kind, and a user-month of 50 questions (five such
conversations).

Three writers, each on a platform of its own: one who asks the ten questions one after another
(every turn inside the 5-minute cache), and one who pauses ten minutes before each question (the
fake's clock is moved on; chat-svc is told the pause passed its `PARLEY_CACHE_HOUR_AFTER_SECONDS`
by setting it to 0) — with the 1-hour cache, and with it kept off (`PARLEY_CACHE_HOUR_AFTER_SECONDS`
a day), so the rule's worth shows. Skipped, with a message, when ../shared/data is not there.
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
LEDGER_WITHIN = 60.0
PAUSE_SECONDS = 600.0
# Claude Sonnet's input and output, USD per million tokens (usage-svc's row): what the
# conversation would cost uncached, and the output's part of the ledger's bill.
INPUT_USD, OUTPUT_USD = 3.00, 15.00


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
class Writer:
    name: str
    pause: float  # seconds the fake's clock moves on before each question after the first
    settings: dict[str, str]


WRITERS = (
    Writer("asks one question after another", 0.0, {}),
    Writer(
        "pauses 10 minutes before each question, 1-hour cache", PAUSE_SECONDS, {"PARLEY_CACHE_HOUR_AFTER_SECONDS": "0"}
    ),
    Writer(
        "pauses 10 minutes before each question, 5-minute cache only",
        PAUSE_SECONDS,
        {"PARLEY_CACHE_HOUR_AFTER_SECONDS": "86400"},
    ),
)


@dataclass(frozen=True, slots=True)
class TurnCost:
    intent: str
    usage: dict[str, int]
    global_tokens: int
    usd: float  # what usage-svc's ledger billed the turn's chat usage

    @property
    def prompt_tokens(self) -> int:
        u = self.usage
        return u["input_tokens"] + u["cache_read_tokens"] + u["cache_write_tokens"]

    def usd_uncached(self, output_usd: float) -> float:
        """Every prompt token at the input price, the output as billed."""
        return self.prompt_tokens * INPUT_USD / 1e6 + output_usd


@dataclass(frozen=True, slots=True)
class Conversation:
    turns: list[TurnCost]
    by_kind: dict[str, float]  # the ledger's bill for the whole conversation, by usage kind
    output_usd: list[float]  # each turn's output at Sonnet's output price (from the ledger's tokens)


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


def _ledger(client: httpx.Client, since: str) -> dict[str, tuple[int, float, int]]:
    """usage-svc's bill since `since`, by kind: (events, USD, output tokens)."""
    reply = client.get("/v1/usage", params={"since": since, "group_by": "kind"})
    reply.raise_for_status()
    return {row["group"]: (row["events"], row["cost_usd"], row["output_tokens"]) for row in reply.json()["rows"]}


def _chat_billed(client: httpx.Client, since: str, turns: int) -> tuple[float, int]:
    """The ledger's chat bill (USD, output tokens) once it holds `turns` chat events."""
    deadline = time.monotonic() + LEDGER_WITHIN
    while time.monotonic() < deadline:
        events, usd, output = _ledger(client, since).get("chat", (0, 0.0, 0))
        if events >= turns:
            return usd, output
        time.sleep(0.2)
    raise TimeoutError(f"usage-svc did not record {turns} chat events within {LEDGER_WITHIN:.0f}s")


def converse(fake: FakeAnthropic, client: httpx.Client, *, pause: float = 0.0) -> Conversation:
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

    since = client.get("/v1/usage").json()["until"]  # the ledger's clock: only this conversation's events after it
    costs: list[TurnCost] = []
    outputs: list[float] = []
    conversation_id = ""
    open_section = ""
    billed, billed_output = 0.0, 0
    for turn, question in enumerate(QUESTIONS, start=1):
        if turn > 1 and pause:
            fake.advance_clock(pause)
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
        usd, output = _chat_billed(client, since, turn)
        costs.append(TurnCost(used["intent"], message["usage"], parts.get("global", 0), usd - billed))
        outputs.append((output - billed_output) * OUTPUT_USD / 1e6)
        billed, billed_output = usd, output
        if message["sources"]:
            open_section = message["sources"][0]["chunk_id"]
    time.sleep(2.0)  # a summary or intent call the last turns asked for is billed in the background
    by_kind = {kind: usd for kind, (_, usd, _) in _ledger(client, since).items()}
    return Conversation(costs, by_kind, outputs)


def run(*, quick: bool = False) -> list[Table]:
    if not (DATA / "screenplays").is_dir():
        print(f"(cache: skipped, {DATA / 'screenplays'} is not there)", flush=True)
        return []
    tables: list[Table] = []
    for writer in WRITERS[:1] if quick else WRITERS:
        with FakeAnthropic() as fake:
            settings = {
                "PARLEY_ANTHROPIC_API_KEY": fake.api_key,
                "PARLEY_ANTHROPIC_BASE_URL": fake.base_url,
                # One user asking ten questions as fast as the bench can: past the default 8 a minute.
                "PARLEY_RATE_CHAT_REQUESTS_PER_MINUTE": "1000",
                "PARLEY_RATE_LLM_TOKENS_PER_MINUTE": "10000000",
                **writer.settings,
            }
            with running_platform(settings) as (platform, _):
                assert platform.secrets is not None
                headers = {"Authorization": f"Bearer {platform.secrets.admin_api_key}"}
                with httpx.Client(base_url=platform.gateway_url, headers=headers, timeout=120) as client:
                    tables.append(_table(writer, converse(fake, client, pause=writer.pause)))
    return tables


def _table(writer: Writer, conversation: Conversation) -> Table:
    costs = conversation.turns
    table = Table(
        f"cache — ten questions about a feature screenplay through the platform, {MODEL}, standard tier; "
        f"a writer who {writer.name}",
        ("turn", "intent", "global", "input", "cache write (1 h)", "cache read", "output", "read share", "ledger USD"),
    )
    for turn, cost in enumerate(costs, start=1):
        u = cost.usage
        table.add(
            turn,
            cost.intent,
            f"{cost.global_tokens:,}",
            f"{u['input_tokens']:,}",
            f"{u['cache_write_tokens']:,} ({u.get('cache_write_1h_tokens', 0):,})",
            f"{u['cache_read_tokens']:,}",
            f"{u['output_tokens']:,}",
            f"{u['cache_read_tokens'] / cost.prompt_tokens:.0%}",
            f"{cost.usd:.4f}",
        )
    later = costs[1:]
    read_share = sum(c.usage["cache_read_tokens"] for c in later) / sum(c.prompt_tokens for c in later)
    chat = sum(c.usd for c in costs)
    total = sum(conversation.by_kind.values())
    uncached = sum(c.usd_uncached(o) for c, o in zip(costs, conversation.output_usd, strict=True))
    kinds = ", ".join(f"{kind} ${usd:.4f}" for kind, usd in sorted(conversation.by_kind.items()))
    first, output = costs[0].usd, sum(conversation.output_usd)
    later_prompts = chat - first - (output - conversation.output_usd[0])
    table.notes.extend(
        [
            f"input tokens read from cache over turns 2–10: {read_share:.1%} (target ≥ 85 %)",
            f"usage-svc's ledger for the conversation: ${total:.4f} ({kinds}); "
            f"every prompt token at the input price instead: ${uncached:.4f}",
            f"where the chat's ${chat:.4f} goes: turn 1 ${first:.4f} (the global context and its passages "
            f"written, its output included), the output of turns 2–10 ${output - conversation.output_usd[0]:.4f}, "
            f"their prompts ${later_prompts:.4f}",
            f"a user-month of {QUERIES_PER_MONTH} questions (five such conversations): "
            f"${total / len(costs) * QUERIES_PER_MONTH:.2f} (target < $0.50)",
            "the price table's Sonnet row per MTok: input $3, output $15, cache read $0.30, "
            "cache write $3.75 (5 minutes) or $6 (an hour)",
        ]
    )
    return table


if __name__ == "__main__":
    for table in run():
        print(table.render())
