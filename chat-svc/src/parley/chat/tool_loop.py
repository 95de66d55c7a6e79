"""A turn's answer when the model may call tools: call, run the tools it asked for, call again with
their results, up to `rounds` times; the call after the last round may not call tools (it answers).

Every call is billed: the usage of all rounds is summed into the turn's one `Finished` (and, if
a later round breaks, into its `StreamBroken`), so the turn's one usage event bills every round.
What the provider reports before a round's end is passed on as a `Reported` of every round so far
(so a cancelled turn bills what was reported), and a round's `FailedAttempt`s are passed on,
numbered across the rounds, for the turn to bill each on its own.
A round after the first that fails before its first token is no longer "nothing happened": the
earlier rounds were answered and are billed, so it ends the turn as a broken-off answer.

The turn's budget hold covers every round (`hold_bound`): a call's input is the prompt plus, per
earlier round, what the model said (at most `max_tokens`) and the results of at most
`MAX_CALLS_PER_ROUND` calls (each at most `MAX_RESULT_BYTES`, so at most that many tokens of any
byte-level tokenizer), with framing.
"""

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from parley.chat.context_builder import Prompt
from parley.chat.global_context import Script
from parley.chat.providers import (
    FailedAttempt,
    Finished,
    LlmProvider,
    ProviderError,
    ProviderEvent,
    Reported,
    StreamBroken,
    TextDelta,
)
from parley.chat.tool_calls import ToolCall, ToolResult, ToolRound
from parley.chat.tools import MAX_CALLS_PER_ROUND, MAX_RESULT_BYTES, SEARCH_K, TOOLS, Toolbox, run_all
from parley.kit.identity import Identity
from parley.v1 import chat_pb2, common_pb2, retrieval_pb2

# Tells the client of a call (False) or its result (True): the turn's stream.
Announce = Callable[[chat_pb2.ToolCall, bool], Awaitable[None]]
# Framing of one call and its result in a request (ids, names, JSON keys): generous.
CALL_FRAMING_TOKENS = 256
# What the model said in a round, sent back as input: its output tokens, with room for a
# tokenizer that splits the re-sent text a little differently.
RESENT_OUTPUT_FACTOR = 2


def hold_bound(*, prompt_tokens: int, max_tokens: int, rounds: int) -> tuple[int, int]:
    """(input tokens, output tokens) that bound every call of a turn of up to `rounds` tool rounds."""
    per_round = RESENT_OUTPUT_FACTOR * max_tokens + MAX_CALLS_PER_ROUND * (MAX_RESULT_BYTES + CALL_FRAMING_TOKENS)
    calls = rounds + 1
    grown = per_round * rounds * (rounds + 1) // 2  # the i-th call carries i earlier rounds
    return prompt_tokens * calls + grown, max_tokens * calls


@dataclass(slots=True)
class ToolSession:
    """What a turn's tools run with, and what they did (stored with the answer)."""

    toolbox: Toolbox
    identity: Identity
    scripts: tuple[Script, ...]
    collection_ids: tuple[str, ...]
    rounds: int
    next_passage: int = 1  # the number a passage a tool finds gets next (after the prompt's)
    calls: list[chat_pb2.ToolCall] = field(default_factory=list)
    model_rounds: int = 0  # calls that asked for tools
    passages: list[tuple[int, retrieval_pb2.ChunkHit]] = field(default_factory=list)  # cited like the prompt's

    async def run(
        self,
        calls: Sequence[ToolCall],
        round_number: int,
        announce: Callable[[chat_pb2.ToolCall, bool], Awaitable[None]],
    ) -> list[ToolResult]:
        for call in calls:
            await announce(ToolResult(call, "").proto(round_number), False)
        results = await run_all(
            self.toolbox,
            self.identity,
            calls,
            scripts=self.scripts,
            collection_ids=self.collection_ids,
            first_passage=self.next_passage,
        )
        self.next_passage += SEARCH_K * sum(1 for call in calls if call.name == "search_script")
        for result in results:
            self.passages.extend(result.passages)
            stored = result.proto(round_number)
            self.calls.append(stored)
            await announce(stored, True)
        return results


def with_tools(prompt: Prompt) -> Prompt:
    return dataclasses.replace(prompt, tools=TOOLS)


async def answer(
    provider: LlmProvider,
    prompt: Prompt,
    *,
    model: str,
    max_tokens: int,
    session: ToolSession | None,
    announce: Announce,
) -> AsyncIterator[ProviderEvent]:
    """The provider's events, through every round; one `Finished` at the end with all rounds' usage."""
    if session is None or not prompt.tools:
        async for event in provider.stream(prompt, model=model, max_tokens=max_tokens):
            yield event
        return
    billed = common_pb2.TokenUsage()
    rounds: list[ToolRound] = []
    failed = 0  # failed attempts so far, across the rounds
    while True:
        allowed = len(rounds) < session.rounds
        asked = dataclasses.replace(prompt, rounds=tuple(rounds), tools_allowed=allowed)
        said: list[str] = []
        finished: Finished | None = None
        try:
            async for event in provider.stream(asked, model=model, max_tokens=max_tokens):
                if isinstance(event, TextDelta):
                    said.append(event.text)
                    yield event
                elif isinstance(event, Reported):
                    yield dataclasses.replace(event, usage=_sum(billed, event.usage))
                elif isinstance(event, FailedAttempt):
                    failed += 1
                    yield dataclasses.replace(event, number=failed)
                else:
                    finished = event
        except StreamBroken as broken:
            broken.usage.CopyFrom(_sum(billed, broken.usage))
            raise
        except ProviderError as error:
            if not rounds:
                raise  # nothing answered yet: retried, fallen back or failed as any turn
            raise StreamBroken(
                f"the model failed after {len(rounds)} tool rounds: {error}",
                provider=provider.name,
                model=model,
                usage=billed,
                usage_estimated=False,
            ) from error
        assert finished is not None, "a provider stream ends with Finished"
        billed = _sum(billed, finished.usage)
        if not finished.tool_calls or not allowed:
            yield dataclasses.replace(finished, usage=billed, tool_calls=())
            return
        session.model_rounds += 1
        yield Reported(billed, provider=finished.provider, model=finished.model)  # while the tools run
        results = await session.run(finished.tool_calls, len(rounds) + 1, announce)
        rounds.append(ToolRound("".join(said), finished.tool_calls, tuple(results)))


def _sum(a: common_pb2.TokenUsage, b: common_pb2.TokenUsage) -> common_pb2.TokenUsage:
    return common_pb2.TokenUsage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cache_read_tokens=a.cache_read_tokens + b.cache_read_tokens,
        cache_write_tokens=a.cache_write_tokens + b.cache_write_tokens,
        cache_write_1h_tokens=a.cache_write_1h_tokens + b.cache_write_1h_tokens,
    )
