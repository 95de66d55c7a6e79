"""The prompt of a turn, built inside the tier's token budget (fitted with cl100k; the provider
counts what it will bill), laid out so that what one turn sends is, as far as possible, the
beginning of what the next turn sends: a provider's prompt cache then reads everything but the
newest exchange.

Its parts, always in this order: system (the instructions), global (the outlines, main
characters' sheets and scene-card index of the conversation's scripts: `global_context`, with an
allowance of its own beside the tier's budget; empty when no document has them), the rolling
summary, the conversation *as it was sent* — each earlier question with the passages and the open
section that were sent with it (`Turn.content` is that text, stored with the question), each
answer as given —, then this turn: the passages it sends, the open section (local), the message.

Passages are numbered across the conversation: a passage keeps the number it was first sent
under, and one that this turn's retrieval finds again while the conversation still holds it is
not sent again (it is cited by that number; the turn's text names it); new ones are numbered on
from the highest number so far (`next_number`). So no earlier text ever changes.

The conversation is trimmed in steps, never sliding (`conversation_start`): its messages from a
cut on are sent as they were, those before the cut plainly (a question without the passages
that came with it: the gist of the conversation stays, its old passages go). The cut stays where
the last turn had it until the conversation would pass `CONVERSATION_SHARE` of the budget; then it
moves on, whole exchanges at a time, until the conversation fills at most half of that share, and
the next turns keep it there again — so between cuts each turn sends the last one's conversation
byte for byte. (Before the window of recent messages, the rolling summary speaks for the rest.)
Within the budget, what matters least goes first: the local text is kept to `LOCAL_SHARE` (cut at
its end), then this turn's new passages from the lowest ranked. The instructions and the message
are always sent.
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from parley.chat.tool_calls import ToolRound, ToolSpec
from parley.kit.tokens import count_tokens, encoding
from parley.v1 import retrieval_pb2

# The conversation as sent (with its passages) may fill this share of the budget (what is left
# after the open section); past it, it is cut back to half of that at once (`conversation_start`).
CONVERSATION_SHARE = 0.5
# The conversation's window of recent messages moves this many messages at a time, not one
# exchange per turn: between moves every turn repeats the last one's conversation as a prefix.
HISTORY_STEP = 6
LOCAL_SHARE = 0.4
PASSAGE_SEPARATOR_TOKENS = 1

INSTRUCTIONS = (
    "You answer questions about the user's documents. Use only the numbered passages in this "
    "conversation: each question comes with the passages found for it, and a passage keeps its number. "
    "Cite every claim with the passage number in brackets, like [1]. "
    "If the passages do not contain the answer, say so."
)
LOCAL_HEADING = "The section the user has open:\n\n"
SUMMARY_HEADING = "Summary of the conversation so far:\n\n"
FOUND_AGAIN = "Passages above that answer this too: "


Message = TypeVar("Message")


def window_start(*, total: int, last: int) -> int:
    """Where the conversation's window begins among its `total` messages: it holds between
    `last` - HISTORY_STEP + 1 and `last` of them; what lies before it, the rolling summary covers."""
    return math.ceil(max(0, total - last) / HISTORY_STEP) * HISTORY_STEP


def history_window(recent: Sequence[Message], *, total: int, last: int) -> Sequence[Message]:
    """Of a conversation's `total` messages, the `recent` ones (at most `last`, the newest last)
    from `window_start` on."""
    return recent[max(0, len(recent) - (total - window_start(total=total, last=last))) :]


def conversation_start(sent: Sequence[int], plain: Sequence[int], *, since: int, allowance: int) -> int:
    """Where the cut in the window's messages falls (their token counts as sent and plain, oldest
    first): those before it go plainly, those from it as sent. `since` (the last turn's cut, as an
    index into these; clipped into them) while the conversation fits in `allowance`; past it, the cut
    moves on two messages (an exchange) at a time until it fits in half of it."""

    def size(cut: int) -> int:
        return sum(plain[:cut]) + sum(sent[cut:])

    cut = min(max(0, since), len(sent))
    cut -= cut % 2  # an exchange begins with its question
    if size(cut) <= allowance:
        return cut
    while cut < len(sent) and size(cut) > allowance // 2:
        cut += 2
    return min(cut, len(sent))


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
    content: str  # as the model read it: a question with the passages and open section sent with it
    holds: tuple[tuple[str, int], ...] = ()  # the passages sent with it: (chunk id, number)
    plain: str = ""  # a question alone, without them (empty: `content` is plain already)

    @property
    def plainly(self) -> "Turn":
        return Turn(self.role, self.plain or self.content)


@dataclass(frozen=True, slots=True)
class Prompt:
    instructions: str
    # Every passage this turn may cite, by number: those found again that the conversation holds
    # (not sent again), then the `sent_passages` sent with this turn.
    passages: tuple[Passage, ...]
    history: tuple[Turn, ...]
    question: str
    global_context: str = ""
    summary: str = ""
    local: str = ""
    sent_passages: int = 0
    # How it was built: (system | global | conversation | passages | local | message, tokens), and
    # what did not fit, in words.
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
    # The conversation pauses longer than a short-lived cache lasts: a provider that can keep a
    # prefix longer (Anthropic's 1-hour cache) writes this turn's for longer.
    long_cache: bool = False
    conversation_from: int = 0  # of the history passed to build_prompt, the first sent as it was (the cut)
    plain_messages: int = 0  # the first this many of `history` go plainly: the cut follows them
    first_free: int = 1  # the number the conversation's next new passage gets (before this turn's)

    @property
    def sent(self) -> tuple[Passage, ...]:
        return self.passages[len(self.passages) - self.sent_passages :]

    @property
    def found_again(self) -> tuple[Passage, ...]:
        return self.passages[: len(self.passages) - self.sent_passages]

    @property
    def next_number(self) -> int:
        """The number the next passage (a tool's) gets: past every number the conversation and
        this turn have used."""
        return max([self.first_free, *(passage.index + 1 for passage in self.passages)])

    def turn_text(self) -> str:
        """This turn's message as the model reads it: the passages sent with it, the passages found
        again (by number), the open section, the question. Stored with the question, so later turns
        send it again byte for byte."""
        again = FOUND_AGAIN + ", ".join(f"[{p.index}]" for p in self.found_again) + "." if self.found_again else ""
        texts = (*(passage.render() for passage in self.sent), again, self.local, self.question)
        return "\n\n".join(text for text in texts if text)

    def parts(self) -> list[str]:
        """Every text the model reads, in order (a provider counts and frames them)."""
        parts = [
            self.instructions,
            self.global_context,
            self.summary,
            *(turn.content for turn in self.history),
            self.turn_text(),
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
    next_number: int = 1,
    conversation_from: int = 0,
    local: str = "",
    summary: str = "",
    global_context: str = "",
    temperature: float | None = None,
) -> Prompt:
    """`hits` best first, as retrieval ranked them; `history` the window of the conversation as sent
    (each question with the passages it holds), of which the last turn's prompt began at
    `conversation_from` (`Prompt.conversation_from` says where this one begins); `next_number` the
    number the first new passage gets (past every number the conversation has used)."""
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

    conversation_budget = max(0, min(remaining, int(budget * CONVERSATION_SHARE)))
    as_sent = [count_tokens(turn.content) for turn in history]
    # Most messages (every answer) have no plain form: their plain count is their count as sent.
    plain = [count_tokens(turn.plain) if turn.plain else tokens for turn, tokens in zip(history, as_sent, strict=True)]
    cut = conversation_start(as_sent, plain, since=conversation_from, allowance=conversation_budget)
    # Rarely even the plain messages before the cut are too many (very long answers): the oldest go.
    first = 0
    while first < cut and sum(plain[first:cut]) + sum(as_sent[cut:]) > conversation_budget:
        first += 1
    kept_history = [turn.plainly for turn in history[first:cut]] + list(history[cut:])
    if cut > first:
        trimmed.append(f"conversation: the passages of the {cut - first} oldest of {len(history)} messages")
    if first:
        trimmed.append(f"conversation: the {first} oldest of {len(history)} messages")
    summary_text = SUMMARY_HEADING + summary if summary else ""
    conversation_tokens = sum(plain[first:cut]) + sum(as_sent[cut:])
    summary_tokens = count_tokens(summary_text) if summary_text else 0
    if summary_text and conversation_tokens + summary_tokens <= conversation_budget:
        conversation_tokens += summary_tokens
    elif summary_text:
        summary_text = ""
        trimmed.append("conversation: the summary")
    remaining -= conversation_tokens
    # A passage found again is cited by its number only while the conversation sent still holds it.
    held = {chunk_id: number for turn in history[cut:] for chunk_id, number in turn.holds}
    passages, sent, passage_trims = _fit_passages(hits, held, next_number, remaining)
    trimmed.extend(passage_trims)
    # The turn's text is one text: its passages part is what it counts beyond the local text and
    # the message, so the parts add up to what the model reads.
    whole = Prompt(INSTRUCTIONS, passages, (), question, local=local_text, sent_passages=sent).turn_text()
    turn_tokens = max(0, count_tokens(whole) - local_tokens - message_tokens)

    return Prompt(
        INSTRUCTIONS,
        passages,
        tuple(kept_history),
        question,
        summary=summary_text,
        local=local_text,
        global_context=global_context,
        sent_passages=sent,
        conversation_from=cut,
        plain_messages=cut - first,
        first_free=next_number,
        part_tokens=(
            ("system", system_tokens),
            ("global", count_tokens(global_context) if global_context else 0),
            ("conversation", conversation_tokens),
            ("passages", turn_tokens),
            ("local", local_tokens),
            ("message", message_tokens),
        ),
        trimmed=tuple(trimmed),
        temperature=temperature,
    )


def _fit_passages(
    hits: Sequence[retrieval_pb2.ChunkHit], held: Mapping[str, int], next_number: int, room: int
) -> tuple[tuple[Passage, ...], int, list[str]]:
    """The hits the conversation holds (by their numbers, costing nothing), then the new ones that
    fit in `room` by rank, numbered on from `next_number`; and how many are new."""
    unique = list({hit.chunk_id: hit for hit in hits}.values())
    again = sorted((Passage(held[hit.chunk_id], hit) for hit in unique if hit.chunk_id in held), key=lambda p: p.index)
    if again:
        room -= count_tokens(FOUND_AGAIN) + 3 * len(again)
    kept: list[retrieval_pb2.ChunkHit] = []
    new = [hit for hit in unique if hit.chunk_id not in held]
    for hit in new:
        # Cost with the number it would have: numbers only grow, so it is never undercounted.
        cost = count_tokens(Passage(next_number + len(new), hit).render()) + PASSAGE_SEPARATOR_TOKENS
        if cost <= room:
            kept.append(hit)
            room -= cost
    sent = tuple(Passage(next_number + n, hit) for n, hit in enumerate(kept))
    dropped = len(new) - len(kept)
    trims = [f"passages: {dropped} of {len(hits)} retrieved, the lowest ranked"] if dropped else []
    return (*again, *sent), len(sent), trims


def _cut(text: str, tokens: int) -> str:
    encoded = encoding().encode(text, disallowed_special=())
    if len(encoded) <= tokens:
        return text
    return encoding().decode(encoded[:tokens]) if tokens > 0 else ""
