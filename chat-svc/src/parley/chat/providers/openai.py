"""OpenAI, or any OpenAI-compatible server by base URL, through OpenAI's official SDK.

Chat Completions, streamed with `stream_options.include_usage` so the last chunk reports usage.
The prompt keeps the context builder's order, stable parts first (one system message with the
instructions, the global context and the summary, then the conversation as it was sent, then one
user message with this turn's passages, the local text and the question — the text the next turn
sends again as history), because OpenAI caches prompt prefixes automatically from 1,024 tokens:
there are no breakpoints to place.

Usage is what the server reports, never a recount: `prompt_tokens` includes the cached tokens
(`prompt_tokens_details.cached_tokens`) and, on models that charge cache writes, the tokens
written (`cache_write_tokens`); both are taken out so `input_tokens` is the uncached rest, as
for Anthropic. A compatible server that reports no usage at all is billed by our own count
(cl100k) and logged, since a turn must not go unbilled.
"""

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import httpx2
import openai
from openai.types.chat import (
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCallParam,
    ChatCompletionToolParam,
)
from openai.types.completion_usage import CompletionUsage

from parley.chat.context_builder import Prompt
from parley.chat.providers.base import Finished, ProviderEvent, TextDelta, prompt_tokens, request_token_bound
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

log = logging.getLogger(__name__)

# A 429 that only more money fixes; retrying it just repeats the refusal.
SPEND_LIMIT_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


def chat_messages(prompt: Prompt) -> list[ChatCompletionMessageParam]:
    # The automatic prefix cache wants the same order: what stays from turn to turn first.
    stable = (prompt.instructions, prompt.global_context, prompt.summary)
    system = "\n\n".join(part for part in stable if part)
    out: list[ChatCompletionMessageParam] = [{"role": "system", "content": system}] if system else []
    for turn in prompt.history:
        if turn.role == "assistant":
            out.append({"role": "assistant", "content": turn.content})
        else:
            out.append({"role": "user", "content": turn.content})
    out.append({"role": "user", "content": prompt.turn_text()})
    # The tool rounds so far: what the model called, then one `tool` message per result.
    for tool_round in prompt.rounds:
        calls: list[ChatCompletionMessageToolCallParam] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
            for c in tool_round.calls
        ]
        out.append({"role": "assistant", "content": tool_round.text or None, "tool_calls": calls})
        for result in tool_round.results:
            out.append({"role": "tool", "tool_call_id": result.call.id, "content": result.text or "(empty)"})
    return out


def tools(prompt: Prompt) -> list[ChatCompletionToolParam]:
    return [
        {"type": "function", "function": {"name": s.name, "description": s.description, "parameters": s.parameters}}
        for s in prompt.tools
    ]


def tool_options(prompt: Prompt) -> dict[str, Any]:
    """`tools` (and `tool_choice: none` on the round that must answer), or nothing."""
    if not prompt.tools:
        return {}
    return {"tools": tools(prompt), **({} if prompt.tools_allowed else {"tool_choice": "none"})}


def token_usage(usage: CompletionUsage) -> common_pb2.TokenUsage:
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details else 0
    written = (details.cache_write_tokens or 0) if details else 0
    return common_pb2.TokenUsage(
        input_tokens=usage.prompt_tokens - cached - written,
        output_tokens=usage.completion_tokens,
        cache_read_tokens=cached,
        cache_write_tokens=written,
    )


class OpenAIProvider:
    def __init__(
        self,
        *,
        api_key: str,
        default_model: str,
        models: Sequence[str] = (),
        base_url: str | None = None,
        read_timeout: float = 60.0,
        name: str = "openai",
        # OpenAI's own models take `max_completion_tokens`; most compatible servers know only `max_tokens`.
        token_limit: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens",
    ) -> None:
        self.name = name
        self.default_model = default_model
        self.models = tuple(dict.fromkeys((default_model, *models)))
        self._token_limit = token_limit
        # max_retries=0: retries, their timing and the fallback belong to providers.reliability.
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=openai.Timeout(read_timeout, connect=5.0), max_retries=0
        )

    async def close(self) -> None:
        await self._client.close()

    def count_tokens(self, prompt: Prompt, *, model: str) -> int:
        # A bound that holds for o200k, cl100k and a compatible server's tokenizer alike (cl100k is
        # exact for older GPT models only).
        return request_token_bound(tools(prompt), chat_messages(prompt))

    async def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]:
        finish_reason = "stop"
        usage: CompletionUsage | None = None
        received: list[str] = []
        building: dict[int, list[str]] = {}  # index → id, name, argument pieces…
        try:
            response = await self._client.chat.completions.create(
                model=model,
                messages=chat_messages(prompt),
                stream=True,
                stream_options={"include_usage": True},
                extra_body={self._token_limit: max_tokens},
                temperature=openai.omit if prompt.temperature is None else prompt.temperature,
                **tool_options(prompt),
            )
            async with response:
                async for chunk in response:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices:
                        if choice.delta.content:
                            received.append(choice.delta.content)
                            yield TextDelta(choice.delta.content)
                        for piece in choice.delta.tool_calls or []:
                            parts = building.setdefault(piece.index, ["", ""])
                            parts[0] = piece.id or parts[0]
                            if piece.function is not None:
                                parts[1] = piece.function.name or parts[1]
                                parts.append(piece.function.arguments or "")
                        if choice.finish_reason is not None:
                            finish_reason = "length" if choice.finish_reason == "length" else "stop"
        except (openai.APIError, httpx2.HTTPError) as error:
            if not received:
                # A usage chunk before the failure (it comes last, so rarely): that call is billed.
                raise self._before_answer(error, usage=None if usage is None else token_usage(usage)) from error
            raise StreamBroken(
                f"{self.name} failed mid-answer: {error}",
                provider=self.name,
                model=model,
                usage=common_pb2.TokenUsage(
                    input_tokens=prompt_tokens(prompt), output_tokens=count_tokens("".join(received))
                ),
                usage_estimated=True,  # the usage chunk comes last; it never came
            ) from error
        if usage is None:
            log.warning("%s reported no usage for model %s; billing our own count", self.name, model)
            counted = common_pb2.TokenUsage(
                input_tokens=prompt_tokens(prompt), output_tokens=count_tokens("".join(received))
            )
            yield Finished(usage=counted, finish_reason=finish_reason, provider=self.name, model=model)
            return
        calls = tuple(
            ToolCall(parts[0], parts[1], parse_arguments("".join(parts[2:]))) for _, parts in sorted(building.items())
        )
        yield Finished(
            usage=token_usage(usage),
            finish_reason="tool_use" if calls else finish_reason,
            provider=self.name,
            model=model,
            tool_calls=calls,
        )

    def _before_answer(
        self, error: openai.APIError | httpx2.HTTPError, *, usage: common_pb2.TokenUsage | None
    ) -> ProviderError:
        if isinstance(error, openai.APIStatusError):
            return classify_status(
                str(error),
                provider=self.name,
                status=error.status_code,
                headers=error.response.headers,
                permanent=error.code in SPEND_LIMIT_CODES,
                usage=usage,
            )
        if isinstance(error, openai.APIResponseValidationError):
            return ProviderRefused(str(error), provider=self.name, usage=usage)
        # An error in the stream before any text, a lost connection, a timeout.
        return ProviderUnavailable(str(error), provider=self.name, usage=usage)
