"""Claude through Anthropic's official SDK: the Messages API, streamed, with prompt caching.

The prompt goes out in the order the context builder made it, what stays first: the tools,
the system prompt (the instructions and the global context, then the rolling summary), the
conversation as it was sent (each earlier question one block: the text the model read for it,
passages included; each answer one block), and this turn's text as one block — the very block
the next turn sends as its history. So a turn's request is the last one's plus one exchange, and
Anthropic's four `cache_control` breakpoints are where they pay:
1. after the instructions and global context: the same for every turn of every conversation over
   those scripts, read even when the conversation is cut back;
2. at the cut (the last message the conversation sends plainly, without its passages): when the
   cut next moves on, the messages before it are sent plainly again, byte for byte, and read;
3. on the last message of the conversation (the last answer): the last turn's request wrote its
   prefix up to the question before it, and this one writes the answer on;
4. on the last block (this turn's text, or the last tool result of a round): the next turn, or
   the next round, reads everything up to here.
The rolling summary changes only when the conversation's window moves, and then the
conversation after it changes too, so a breakpoint between them would never be read.
A breakpoint on a prefix shorter than the model's minimum cacheable length is not placed.

Lifetimes: a write lives 5 minutes (1.25x input) unless the prompt says the conversation pauses
longer (`Prompt.long_cache`): then every breakpoint asks for an hour (`ttl: "1h"`, 2x input), since
one read after a pause (0.1x instead of writing it all again at 1.25x) pays the difference.

Usage is what Anthropic reports, never a recount: `input_tokens` excludes the cache, so it maps
directly, with `cache_read_input_tokens` and `cache_creation_input_tokens` beside it, and
`cache_creation.ephemeral_1h_input_tokens` the part written for an hour. The input side comes
first, in `message_start` (the only event that breaks the writes down by lifetime): it is passed
on at once (`Reported`), and a stream that breaks after it but before any text fails with that
usage on the error (the call is billed by Anthropic, so by us), its output bounded by the bytes of
any tool input received.
"""

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anthropic
import httpx2
from anthropic.types import MessageParam, TextBlockParam, ToolParam

from parley.chat.context_builder import Prompt
from parley.chat.providers.base import (
    Finished,
    ProviderEvent,
    Reported,
    TextDelta,
    request_token_bound,
    text_token_bound,
)
from parley.chat.providers.errors import (
    ProviderError,
    ProviderRefused,
    ProviderUnavailable,
    StreamBroken,
    classify_status,
)
from parley.chat.tool_calls import ToolCall, parse_arguments
from parley.kit.tokens import count_tokens
from parley.v1 import common_pb2

EPHEMERAL: anthropic.types.CacheControlEphemeralParam = {"type": "ephemeral"}
AN_HOUR: anthropic.types.CacheControlEphemeralParam = {"type": "ephemeral", "ttl": "1h"}


def cache_control(prompt: Prompt) -> anthropic.types.CacheControlEphemeralParam:
    return AN_HOUR if prompt.long_cache else EPHEMERAL


# Anthropic's error types that a later attempt may not meet, whatever the HTTP status said.
TRANSIENT_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})
LENGTH_STOPS = frozenset({"max_tokens", "model_context_window_exceeded"})


# The shortest prefix each model caches, from Anthropic's prompt-caching page (the first family a
# model id contains; others: DEFAULT_MIN_CACHEABLE). A breakpoint on a shorter prefix is ignored
# by the API and only spends one of the four slots, so `request` does not place it.
MIN_CACHEABLE_TOKENS: tuple[tuple[str, int], ...] = (
    ("opus-5", 512),
    ("fable-5", 512),
    ("mythos-5", 512),
    ("haiku-4-5", 4_096),
    ("opus-4-5", 4_096),
    ("opus-4-6", 4_096),
    ("opus-4-7", 4_096),
    ("haiku-3", 2_048),
    ("sonnet", 1_024),
    ("opus", 1_024),
)
DEFAULT_MIN_CACHEABLE = 1_024


def min_cacheable(model: str) -> int:
    return next((tokens for family, tokens in MIN_CACHEABLE_TOKENS if family in model), DEFAULT_MIN_CACHEABLE)


def request(prompt: Prompt, *, model: str) -> dict[str, Any]:
    """The request's prompt (tools, system, messages), with the breakpoints on prefixes too short
    for the model to cache taken off (counted with cl100k, which never overcounts Claude)."""
    built: dict[str, Any] = {"system": system_blocks(prompt), "messages": messages(prompt), **tool_options(prompt)}
    minimum, counted = min_cacheable(model), 0
    blocks: list[dict[str, Any]] = [*built.get("tools", []), *built["system"]]
    blocks += [block for message in built["messages"] for block in message["content"]]
    for block in blocks:
        counted += count_tokens(block["text"]) if block.get("type") == "text" else count_tokens(json.dumps(block))
        if "cache_control" in block and counted < minimum:
            del block["cache_control"]
    return built


def tools(prompt: Prompt) -> list[ToolParam]:
    """The tools on offer, in cache order before the system prompt: the same list every turn."""
    return [
        {"name": spec.name, "description": spec.description, "input_schema": spec.parameters} for spec in prompt.tools
    ]


def tool_options(prompt: Prompt) -> dict[str, Any]:
    """`tools` (and, on the round that must answer, `tool_choice: none`), or nothing."""
    if not prompt.tools:
        return {}
    options: dict[str, Any] = {"tools": tools(prompt)}
    if not prompt.tools_allowed:
        options["tool_choice"] = {"type": "none"}
    return options


def system_blocks(prompt: Prompt) -> list[TextBlockParam]:
    stable: list[TextBlockParam] = [
        {"type": "text", "text": text} for text in (prompt.instructions, prompt.global_context) if text
    ]
    # The API refuses empty text blocks, hence the filter above and the check here.
    if stable:
        stable[-1]["cache_control"] = cache_control(prompt)
    summary: list[TextBlockParam] = [{"type": "text", "text": prompt.summary}] if prompt.summary else []
    return [*stable, *summary]


def messages(prompt: Prompt) -> list[MessageParam]:
    """The conversation as sent, then this turn's text, one text block each; a run of turns by one
    role is one message.

    The history window may begin with an answer whose question it cut off: the API wants a user
    message first, and an answer without its question helps no one, so it is left out.
    """
    merged: list[tuple[str, list[Any]]] = []
    history = [(turn.role, turn.content) for turn in prompt.history]
    for position, (role, content) in enumerate([*history, ("user", prompt.turn_text())]):
        if not content or (not merged and role != "user"):
            continue
        block: TextBlockParam = {"type": "text", "text": content}
        if merged and merged[-1][0] == role:
            merged[-1][1].append(block)
        else:
            merged.append((role, [block]))
        if position in (prompt.plain_messages - 1, len(history) - 1):
            block["cache_control"] = cache_control(prompt)
    # The tool rounds so far follow the question: what the model said and called, then the results.
    for tool_round in prompt.rounds:
        said: list[Any] = [{"type": "text", "text": tool_round.text}] if tool_round.text.strip() else []
        uses = [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in tool_round.calls]
        merged.append(("assistant", [*said, *uses]))
        results = [
            {"type": "tool_result", "tool_use_id": r.call.id, "content": r.text or "(empty)", "is_error": r.is_error}
            for r in tool_round.results
        ]
        merged.append(("user", results))
    if merged:
        merged[-1][1][-1]["cache_control"] = cache_control(prompt)
    out: list[MessageParam] = []
    for role, blocks in merged:
        if role == "assistant":
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": "user", "content": blocks})
    return out


class AnthropicProvider:
    def __init__(
        self,
        *,
        api_key: str,
        default_model: str,
        models: Sequence[str] = (),
        base_url: str | None = None,
        read_timeout: float = 60.0,
        name: str = "anthropic",
    ) -> None:
        self.name = name
        self.default_model = default_model
        self.models = tuple(dict.fromkeys((default_model, *models)))
        # max_retries=0: retries, their timing and the fallback belong to providers.reliability.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=anthropic.Timeout(read_timeout, connect=5.0), max_retries=0
        )

    async def close(self) -> None:
        await self._client.close()

    def count_tokens(self, prompt: Prompt, *, model: str) -> int:
        # A bound, not a count: Claude's tokenizer is Anthropic's own (its count endpoint would be a
        # round trip per turn), and cl100k undercounts it, so a hold priced on cl100k could be passed.
        # Every breakpoint left on (its bytes count): never less than the request sent.
        return request_token_bound(tools(prompt), system_blocks(prompt), messages(prompt))

    async def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]:
        input_tokens = cache_read = cache_write = cache_write_1h = output_tokens = 0
        stop_reason: str | None = None
        received: list[str] = []
        finished = False
        calls: list[ToolCall] = []
        building: dict[int, tuple[str, str, list[str]]] = {}  # block index → id, name, JSON pieces
        reported: common_pb2.TokenUsage | None = None  # once message_start came
        try:
            response = await self._client.messages.create(
                model=model,
                max_tokens=max_tokens,
                **request(prompt, model=model),
                stream=True,
            )
            async with response:
                async for event in response:
                    if event.type == "message_start":
                        usage = event.message.usage
                        input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
                        cache_read = usage.cache_read_input_tokens or 0
                        cache_write = usage.cache_creation_input_tokens or 0
                        if usage.cache_creation is not None:
                            cache_write_1h = usage.cache_creation.ephemeral_1h_input_tokens or 0
                        reported = common_pb2.TokenUsage(
                            input_tokens=input_tokens,
                            output_tokens=output_tokens,
                            cache_read_tokens=cache_read,
                            cache_write_tokens=cache_write,
                            cache_write_1h_tokens=min(cache_write_1h, cache_write),
                        )
                        yield Reported(reported, provider=self.name, model=model)
                    elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                        building[event.index] = (event.content_block.id, event.content_block.name, [])
                    elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                        building[event.index][2].append(event.delta.partial_json)
                    elif event.type == "content_block_stop" and event.index in building:
                        call_id, name, pieces = building.pop(event.index)
                        calls.append(ToolCall(call_id, name, parse_arguments("".join(pieces))))
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        received.append(event.delta.text)
                        yield TextDelta(event.delta.text)
                    elif event.type == "message_delta":
                        # Cumulative figures; the input side is repeated here by newer API versions.
                        stop_reason = event.delta.stop_reason
                        output_tokens = event.usage.output_tokens
                        input_tokens = _or(event.usage.input_tokens, input_tokens)
                        cache_read = _or(event.usage.cache_read_input_tokens, cache_read)
                        cache_write = _or(event.usage.cache_creation_input_tokens, cache_write)
                    elif event.type == "message_stop":
                        finished = True
            if not finished:
                raise httpx2.RemoteProtocolError("the stream ended before message_stop")
        except (anthropic.APIError, httpx2.HTTPError) as error:
            if not received:
                spent: common_pb2.TokenUsage | None = None
                if reported is not None:  # billed: the input, and any tool input it began to write
                    written = "".join(name + "".join(pieces) for _, name, pieces in building.values())
                    written += "".join(call.name + call.arguments_json for call in calls)
                    spent = common_pb2.TokenUsage()
                    spent.CopyFrom(reported)
                    spent.output_tokens = max(output_tokens, text_token_bound(written))
                raise self._before_answer(error, usage=spent) from error
            partial = common_pb2.TokenUsage(
                input_tokens=input_tokens,
                output_tokens=max(output_tokens, count_tokens("".join(received))),
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
                cache_write_1h_tokens=min(cache_write_1h, cache_write),
            )
            raise StreamBroken(
                f"{self.name} failed mid-answer: {error}",
                provider=self.name,
                model=model,
                usage=partial,
                usage_estimated=True,  # output is our count: Anthropic reports it only at the end
            ) from error
        billed = common_pb2.TokenUsage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            cache_write_1h_tokens=min(cache_write_1h, cache_write),
        )
        finish_reason = "length" if stop_reason in LENGTH_STOPS else "tool_use" if calls else "stop"
        yield Finished(
            usage=billed, finish_reason=finish_reason, provider=self.name, model=model, tool_calls=tuple(calls)
        )

    def _before_answer(
        self, error: anthropic.APIError | httpx2.HTTPError, *, usage: common_pb2.TokenUsage | None
    ) -> ProviderError:
        if isinstance(error, anthropic.APIStatusError):
            if error.status_code == 200:  # an `error` event in the stream, before any text
                if error.type in TRANSIENT_ERROR_TYPES:
                    return ProviderUnavailable(str(error), provider=self.name, usage=usage)
                return ProviderRefused(str(error), provider=self.name, usage=usage)
            return classify_status(
                str(error), provider=self.name, status=error.status_code, headers=error.response.headers, usage=usage
            )
        if isinstance(error, anthropic.APIResponseValidationError):
            return ProviderRefused(str(error), provider=self.name, usage=usage)
        return ProviderUnavailable(str(error), provider=self.name, usage=usage)  # connection lost, timed out


def _or(reported: int | None, known: int) -> int:
    return known if reported is None else reported
