"""The prompt of a turn, built inside the tier's token budget (fitted with cl100k; the provider
counts what it will bill).

Its parts, always in this order so a provider's prompt cache can reuse the longest prefix:
system (the instructions), global (the outlines, main characters' sheets and scene-card index of
the conversation's scripts: `global_context`, with an allowance of its own beside the tier's
budget; empty when no document has them), the retrieved passages, the conversation (a rolling summary, then the last
messages), local (the text of the section the user has open) and the message.

The passages are split for the cache. Those carried over from the last turn come first, in the
order and under the numbers they had, before the conversation; this turn's new ones come after
the conversation (`fresh_passages`), just before the local text and the message. So what stays
(instructions, carried passages, the conversation so far) is a prefix the next turn repeats byte
for byte, and what changes sits after it. On the first turn there is no conversation yet and
every passage counts as carried: the next turn carries them all.

When the parts do not fit, they are trimmed by priority, what matters least going first:
passages carried over that this turn's retrieval did not find again, then this turn's passages
from the lowest ranked, while the conversation keeps at most `HISTORY_SHARE` of the budget (its
oldest messages go first) and the local text at most `LOCAL_SHARE` (cut at its end). The
instructions and the message are always sent.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from parley.chat.tool_calls import ToolRound, ToolSpec
from parley.kit.tokens import count_tokens, encoding
from parley.v1 import retrieval_pb2

HISTORY_SHARE = 0.3
# The conversation's window of recent messages moves this many messages at a time, not one
# exchange per turn: between moves every turn repeats the last one's conversation as a prefix.
HISTORY_STEP = 6
LOCAL_SHARE = 0.4
PASSAGE_SEPARATOR_TOKENS = 1

INSTRUCTIONS = (
    "You answer questions about the user's documents. Use only the numbered passages below. "
    "Cite every claim with the passage number in brackets, like [1]. "
    "If the passages do not contain the answer, say so."
)
LOCAL_HEADING = "The section the user has open:\n\n"
SUMMARY_HEADING = "Summary of the conversation so far:\n\n"


Message = TypeVar("Message")


def window_start(*, total: int, last: int) -> int:
    """Where the conversation's window begins among its `total` messages: it holds between
    `last` - HISTORY_STEP + 1 and `last` of them; what lies before it, the rolling summary covers."""
    return math.ceil(max(0, total - last) / HISTORY_STEP) * HISTORY_STEP


def history_window(recent: Sequence[Message], *, total: int, last: int) -> Sequence[Message]:
    """Of a conversation's `total` messages, the `recent` ones (at most `last`, the newest last)
    from `window_start` on."""
    return recent[max(0, len(recent) - (total - window_start(total=total, last=last))) :]


@dataclass(frozen=True, slots=True)
class Passage:
    index: int  # the [n] an answer cites
    hit: retrieval_pb2.ChunkHit

    def render(self) -> str:
        where = f"{self.hit.document_title} › {self.hit.heading}" if self.hit.heading else self.hit.document_title
        return f"[{self.index}] ({where})\n{self.hit.text}"


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # user | assistant
    content: str


@dataclass(frozen=True, slots=True)
class Prompt:
    instructions: str
    passages: tuple[Passage, ...]
    history: tuple[Turn, ...]
    question: str
    global_context: str = ""
    summary: str = ""
    local: str = ""
    fresh_passages: int = 0  # the last this many passages are new this turn: they follow the conversation
    # How it was built: (system | global | passages | conversation | new_passages | local | message,
    # tokens), and what did not fit, in words.
    part_tokens: tuple[tuple[str, int], ...] = ()
    trimmed: tuple[str, ...] = ()
    # Tools the model may call (tool_loop), the rounds so far, and whether this call may call
    # more (the last round may not: it answers).
    tools: tuple[ToolSpec, ...] = ()
    rounds: tuple[ToolRound, ...] = ()
    tools_allowed: bool = True
    # Sampling temperature the caller asked for (0-2); None: the provider's default. Sent by the
    # OpenAI-API providers only (turn_context.MAX_TEMPERATURE says why).
    temperature: float | None = None

    @property
    def carried(self) -> tuple[Passage, ...]:
        return self.passages[: len(self.passages) - self.fresh_passages]

    @property
    def fresh(self) -> tuple[Passage, ...]:
        return self.passages[len(self.passages) - self.fresh_passages :]

    def context(self) -> str:
        """The carried passages, which go before the conversation."""
        return "\n\n".join(passage.render() for passage in self.carried)

    def fresh_context(self) -> str:
        """The new passages, which go after it."""
        return "\n\n".join(passage.render() for passage in self.fresh)

    def parts(self) -> list[str]:
        """Every text the model reads, in order (a provider counts and frames them)."""
        parts = [
            self.instructions,
            self.global_context,
            self.context(),
            self.summary,
            *(turn.content for turn in self.history),
            self.fresh_context(),
            self.local,
            self.question,
            *(spec.description + json.dumps(spec.parameters) for spec in self.tools),
            *(
                text
                for tool_round in self.rounds
                for text in (
                    tool_round.text,
                    *(call.name + call.arguments_json for call in tool_round.calls),
                    *(result.text for result in tool_round.results),
                )
            ),
        ]
        return [part for part in parts if part]


def build_prompt(
    *,
    question: str,
    hits: Sequence[retrieval_pb2.ChunkHit],
    history: Sequence[Turn],
    budget: int,
    carried: Sequence[retrieval_pb2.ChunkHit] = (),
    local: str = "",
    summary: str = "",
    global_context: str = "",
    temperature: float | None = None,
) -> Prompt:
    """`hits` best first, as retrieval ranked them; `carried` the passages to keep before the
    conversation if they fit, in the order the last turn had them."""
    trimmed: list[str] = []
    system_tokens, message_tokens = count_tokens(INSTRUCTIONS), count_tokens(question)
    remaining = budget - system_tokens - message_tokens

    local_text, local_tokens = "", 0
    if local.strip():
        allowed = max(0, min(remaining, int(budget * LOCAL_SHARE)) - count_tokens(LOCAL_HEADING))
        body = _cut(local, allowed)
        if body != local:
            trimmed.append(f"local: the open section cut to {allowed} tokens")
        if body:
            local_text = LOCAL_HEADING + body
            local_tokens = count_tokens(local_text)
            remaining -= local_tokens

    conversation_budget = min(remaining, int(budget * HISTORY_SHARE))
    kept_history: list[Turn] = []
    for turn in reversed(history):  # the most recent messages matter most
        cost = count_tokens(turn.content)
        if cost > conversation_budget:
            break
        kept_history.insert(0, turn)
        conversation_budget -= cost
    if len(kept_history) < len(history):
        trimmed.append(f"conversation: the {len(history) - len(kept_history)} oldest of {len(history)} messages")
    summary_text = SUMMARY_HEADING + summary if summary else ""
    if summary_text and count_tokens(summary_text) <= conversation_budget:
        conversation_budget -= count_tokens(summary_text)
    elif summary_text:
        summary_text = ""
        trimmed.append("conversation: the summary")
    conversation_tokens = count_tokens(summary_text) + sum(count_tokens(turn.content) for turn in kept_history)
    remaining -= conversation_tokens

    passages, fresh, passage_trims = _fit_passages(carried, hits, remaining)
    trimmed.extend(passage_trims)
    if not (kept_history or summary_text):
        fresh = 0  # nothing to keep them apart from: all carry over to the next turn
    passage_tokens = [count_tokens(passage.render()) + PASSAGE_SEPARATOR_TOKENS for passage in passages]
    split = len(passages) - fresh

    return Prompt(
        INSTRUCTIONS,
        passages,
        tuple(kept_history),
        question,
        summary=summary_text,
        local=local_text,
        global_context=global_context,
        fresh_passages=fresh,
        part_tokens=(
            ("system", system_tokens),
            ("global", count_tokens(global_context) if global_context else 0),
            ("passages", sum(passage_tokens[:split])),
            ("conversation", conversation_tokens),
            ("new_passages", sum(passage_tokens[split:])),
            ("local", local_tokens),
            ("message", message_tokens),
        ),
        trimmed=tuple(trimmed),
        temperature=temperature,
    )


def _fit_passages(
    carried: Sequence[retrieval_pb2.ChunkHit], hits: Sequence[retrieval_pb2.ChunkHit], room: int
) -> tuple[tuple[Passage, ...], int, list[str]]:
    """Carried passages first, then new ones, numbered in that order, and how many are new;
    dropped by priority if over `room`."""
    found = {hit.chunk_id for hit in hits}
    # A passage keeps the place it had last turn, with what this turn's retrieval says of it.
    ordered = list({hit.chunk_id: hit for hit in [*carried, *hits]}.values())
    carried_ids = {hit.chunk_id for hit in carried}
    # Priority: this turn's hits by rank, then carried passages it did not find again, earliest first.
    by_priority = [hit.chunk_id for hit in hits] + [hit.chunk_id for hit in carried if hit.chunk_id not in found]
    # Cost with a two-digit "[nn]": the number may shift when an earlier passage is dropped.
    cost = {hit.chunk_id: count_tokens(Passage(99, hit).render()) + PASSAGE_SEPARATOR_TOKENS for hit in ordered}
    kept: set[str] = set()
    for chunk_id in dict.fromkeys(by_priority):
        if cost[chunk_id] <= room:
            kept.add(chunk_id)
            room -= cost[chunk_id]
    passages = tuple(
        Passage(index=number, hit=hit)
        for number, hit in enumerate((hit for hit in ordered if hit.chunk_id in kept), start=1)
    )
    fresh = len([passage for passage in passages if passage.hit.chunk_id not in carried_ids])
    trims: list[str] = []
    dropped_carried = len([chunk_id for chunk_id in carried_ids if chunk_id not in kept])
    dropped_new = len([hit for hit in hits if hit.chunk_id not in kept and hit.chunk_id not in carried_ids])
    if dropped_carried:
        trims.append(f"passages: {dropped_carried} carried over from the last answer")
    if dropped_new:
        trims.append(f"passages: {dropped_new} of {len(hits)} retrieved, the lowest ranked")
    return passages, fresh, trims


def _cut(text: str, tokens: int) -> str:
    encoded = encoding().encode(text, disallowed_special=())
    if len(encoded) <= tokens:
        return text
    return encoding().decode(encoded[:tokens]) if tokens > 0 else ""
