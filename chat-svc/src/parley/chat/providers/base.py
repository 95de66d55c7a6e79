"""LLM providers behind one interface: a stream of text deltas, then the call's usage.

A stream's events: `Reported` when the provider reports usage before the answer (Anthropic's
`message_start`: the input and cache figures), `TextDelta`s, then one `Finished`. Wrapped in
`reliability.ReliableProvider`, a stream may also carry `FailedAttempt`s before its answer: an
attempt that failed after the provider reported usage for it, which the caller bills.

Every provider counts a prompt with cl100k (`prompt_tokens`), its own tokenizer's figures
being unknown before the call: for Claude and GPT models that is close but not exact, so the
budget hold is an estimate; what is billed is what the provider reports in `Finished`.
"""

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from parley.chat.context_builder import Prompt
from parley.chat.tool_calls import ToolCall
from parley.kit.tokens import count_tokens
from parley.v1 import common_pb2


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    usage: common_pb2.TokenUsage  # as the provider reports it: what the call is billed for
    finish_reason: str  # stop | length
    # Who answered: after a fallback not the provider or model asked for, and priced otherwise.
    provider: str
    model: str
    # The tools the model asked for (finish_reason `tool_use`): the turn runs them and asks again.
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class Reported:
    """What the provider has reported of the call so far, before its end (its input side, and the
    first output token Anthropic counts): billed even if the call never finishes."""

    usage: common_pb2.TokenUsage
    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    """An attempt that failed before its answer after the provider reported usage for it: the
    provider bills it, so the caller bills it too, as its own usage event (`number`: the attempt's
    place in its stream, from 1, unique within the stream; the tool loop renumbers them across its
    rounds), at its own provider's and model's price. The stream goes on
    (another attempt, a fallback) or raises the failure."""

    usage: common_pb2.TokenUsage
    provider: str
    model: str
    number: int


ProviderEvent = TextDelta | Finished | Reported | FailedAttempt


class LlmProvider(Protocol):
    name: str
    default_model: str
    models: tuple[str, ...]  # the models a request may name, the default first

    def count_tokens(self, prompt: Prompt, *, model: str) -> int:
        """At least the input tokens the call will be billed for (never fewer): the hold is priced on it."""
        ...

    def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]: ...

    async def close(self) -> None: ...


def prompt_tokens(prompt: Prompt) -> int:
    """cl100k's count: what the local provider bills, and our estimate of a remote prompt."""
    return sum(count_tokens(part) for part in prompt.parts())


# Tokens a provider may add to a request beyond its text (a system preamble, role markers).
FRAMING_TOKENS = 64


def text_token_bound(text: str) -> int:
    """At least as many tokens as any byte-level BPE tokenizer makes of `text` (each token covers
    at least one byte): the output of an answer cut off before the provider said how long it was."""
    return len(text.encode())


def cut_off_usage(
    reported: Reported | None, since_report: str, *, prompt_bound: Callable[[], int]
) -> common_pb2.TokenUsage:
    """What a provider cut off by us mid-call charges, never less: what it reported, plus the bytes
    of the text received since (a bound of its tokens); with no report but text, `prompt_bound()`
    (the provider's bound of the prompt) for the input; nothing when it neither reported nor said
    anything."""
    usage = common_pb2.TokenUsage()
    if reported is not None:
        usage.CopyFrom(reported.usage)
    elif since_report:
        usage.input_tokens = prompt_bound()
    usage.output_tokens += text_token_bound(since_report)
    return usage


def request_token_bound(*request: object) -> int:
    """At least as many tokens as any byte-level BPE tokenizer (Claude's, OpenAI's o200k and
    cl100k, Llama's) makes of the request's text: each token covers at least one byte, so the
    request's JSON (its text, escaped, with framing per message and block that outweighs the few
    special tokens the provider adds per message) is a bound, plus `FRAMING_TOKENS`. A hold priced
    on it is an upper bound on the bill; an estimate (cl100k for Claude) would not be."""
    return len(json.dumps(request, ensure_ascii=False).encode()) + FRAMING_TOKENS
