"""A fake of Anthropic's Messages API (`POST /v1/messages`), whole and streamed, with prompt caching.

Point the real SDK at it: `AsyncAnthropic(base_url=fake.base_url, api_key=fake.api_key)`.

Prompt caching as Anthropic documents it:
- the prompt is read in cache order: `tools`, then `system`, then `messages`, block by block;
- a block with `cache_control` (or the last block, under a top-level `cache_control`) is a
  breakpoint; more than 4 is a 400 `invalid_request_error`;
- a cache read needs a byte-identical prefix (same model, same blocks in the same order, their
  `cache_control` aside) ending at one of the request's breakpoints, or at one of the 20 block
  boundaries before a breakpoint (the documented lookback); the longest such prefix is read;
- a breakpoint past what was read is written if its prefix reaches the model's minimum
  cacheable length; `cache_creation_input_tokens` is what was written beyond the read, and
  `cache_creation` says how much of it at each lifetime (`ephemeral_1h_input_tokens`: the tokens
  up to the last 1-hour breakpoint written, `ephemeral_5m_input_tokens`: the rest);
- an entry lives 5 minutes (`ttl: "1h"`: an hour) and each read refreshes it; a 1-hour
  breakpoint after a 5-minute one is a 400 (longer lifetimes must come first);
- `input_tokens` is what is neither read nor written: the three add up to the prompt.
Tokens are counted with cl100k_base (see `scripting`), block text only, no per-message overhead.
"""

import asyncio
import hashlib
import json
import threading
import uuid
from dataclasses import dataclass

from tests.fakes.artifact_answers import artifact_answer
from tests.fakes.http_server import JsonObject, Request, Response
from tests.fakes.scripting import (
    Answer,
    Behaviour,
    Received,
    Script,
    ScriptedServer,
    compose,
    count,
    retry_headers,
)

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
# Minimum cacheable prompt length by model family, from Anthropic's prompt caching page (the
# first family that a model id contains); anything not listed gets the Sonnet figure, 1,024.
MIN_CACHEABLE_BY_MODEL = {
    "opus-5": 512,
    "fable-5": 512,
    "mythos-5": 512,
    "haiku-4-5": 4096,
    "opus-4-5": 4096,
    "opus-4-6": 4096,
    "opus-4-7": 4096,
    "haiku-3": 2048,
}
DEFAULT_MIN_CACHEABLE = 1024

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True, slots=True)
class CacheUsage:
    input_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cache_creation_1h_input_tokens: int = 0  # of cache_creation_input_tokens, written to live an hour

    def report(self) -> JsonObject:
        """The input side of the API's `usage`."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_input_tokens - self.cache_creation_1h_input_tokens,
                "ephemeral_1h_input_tokens": self.cache_creation_1h_input_tokens,
            },
        }


@dataclass(frozen=True, slots=True)
class Served:
    """A call the fake answered (status 200): the usage it reports, and the output it produced: the
    whole answer once sent; for a stream broken off (scripted, or the client went away) the tokens
    of the text sent so far, and at least the one token `message_start` reports."""

    model: str
    usage: CacheUsage
    output_tokens: int


@dataclass(slots=True)
class _Serving:
    model: str
    usage: CacheUsage
    output_tokens: int

    def snapshot(self) -> Served:
        return Served(self.model, self.usage, self.output_tokens)


@dataclass(slots=True)
class _Entry:
    ttl: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Block:
    key: str  # hash of the prefix through this block: equal keys, byte-identical prefixes
    tokens: int  # of the prefix through this block
    ttl: float | None  # a breakpoint's lifetime; None: not a breakpoint


class _PromptCache:
    def __init__(self, behaviour: Behaviour, min_cacheable: int | None) -> None:
        self._behaviour = behaviour
        self._min_cacheable = min_cacheable
        self._entries: dict[str, _Entry] = {}

    def minimum(self, model: str) -> int:
        if self._min_cacheable is not None:
            return self._min_cacheable
        return next((n for family, n in MIN_CACHEABLE_BY_MODEL.items() if family in model), DEFAULT_MIN_CACHEABLE)

    def forget(self) -> None:
        self._entries.clear()

    def use(self, model: str, blocks: list[_Block]) -> CacheUsage:
        now = self._behaviour.now()
        breakpoints = [i for i, block in enumerate(blocks) if block.ttl is not None]
        total = blocks[-1].tokens if blocks else 0

        read_at = -1
        for breakpoint in breakpoints:
            for boundary in range(breakpoint, max(-1, breakpoint - LOOKBACK_BLOCKS), -1):
                entry = self._entries.get(blocks[boundary].key)
                if entry is not None and entry.expires_at > now and boundary > read_at:
                    read_at = boundary
        if read_at >= 0:
            entry = self._entries[blocks[read_at].key]
            entry.expires_at = now + entry.ttl
        read = blocks[read_at].tokens if read_at >= 0 else 0

        written_to = written_1h_to = read
        for breakpoint in breakpoints:
            block = blocks[breakpoint]
            if breakpoint <= read_at or block.ttl is None or block.tokens < self.minimum(model):
                continue
            self._entries[block.key] = _Entry(ttl=block.ttl, expires_at=now + block.ttl)
            written_to = max(written_to, block.tokens)
            if block.ttl > TTL_SECONDS["5m"]:
                written_1h_to = max(written_1h_to, block.tokens)
        written = written_to - read
        return CacheUsage(
            input_tokens=total - read - written,
            cache_read_input_tokens=read,
            cache_creation_input_tokens=written,
            cache_creation_1h_input_tokens=written_1h_to - read,
        )


def _cache_blocks(body: JsonObject) -> list[_Block]:
    """The prompt in cache order, each block with the hash and token count of the prefix it ends."""
    raw: list[tuple[str, JsonObject]] = [("tool", tool) for tool in body.get("tools") or []]
    system = body.get("system")
    if isinstance(system, str):
        raw.append(("system", {"type": "text", "text": system}))
    elif isinstance(system, list):
        raw += [("system", block) for block in system]
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        raw += [(message.get("role", "user"), block) for block in content or []]
    if raw and body.get("cache_control"):
        where, last = raw[-1]
        raw[-1] = (where, {**last, "cache_control": body["cache_control"]})

    blocks: list[_Block] = []
    key = hashlib.sha256(str(body.get("model")).encode()).hexdigest()
    tokens = 0
    for where, block in raw:
        cache_control = block.get("cache_control")
        canonical = json.dumps([where, {k: v for k, v in block.items() if k != "cache_control"}], sort_keys=True)
        key = hashlib.sha256((key + canonical).encode()).hexdigest()
        tokens += count(block["text"]) if block.get("type") == "text" else count(canonical)
        ttl = TTL_SECONDS.get(cache_control.get("ttl", "5m"), 300.0) if cache_control else None
        blocks.append(_Block(key=key, tokens=tokens, ttl=ttl))
    return blocks


def _tool_problem(body: JsonObject) -> str:
    """What the API refuses of tool blocks: a tool_use without `tools`, or a tool_result that does
    not answer a tool_use of the assistant message just before it."""
    previous_uses: set[str] = set()
    for message in body.get("messages") or []:
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        uses = {block["id"] for block in blocks if block.get("type") == "tool_use"}
        if uses and not body.get("tools"):
            return "tool_use blocks need tools"
        for block in blocks:
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in previous_uses:
                return f"tool_result {block.get('tool_use_id')} answers no tool_use just before it"
        previous_uses = uses if message.get("role") == "assistant" else set()
    return ""


def _sse(event: str, data: JsonObject) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _error_body(status: int, message: str) -> JsonObject:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


class FakeAnthropic(ScriptedServer):
    """`advance_clock` ages the cache; `forget_cache` empties it."""

    def __init__(self, *, answer: str | None = None, min_cacheable_tokens: int | None = None) -> None:
        super().__init__(answer=answer)
        self._cache = _PromptCache(self.behaviour, min_cacheable_tokens)
        self._served: list[_Serving] = []
        self._served_lock = threading.Lock()

    @property
    def served(self) -> list[Served]:
        """Every call answered since the last `reset`, in order."""
        with self._served_lock:
            return [serving.snapshot() for serving in self._served]

    def reset(self) -> None:
        super().reset()
        with self._served_lock:
            self._served.clear()

    @property
    def base_url(self) -> str:
        return self.origin  # the SDK appends /v1/messages

    def forget_cache(self) -> None:
        self._cache.forget()

    async def handle(self, request: Request, response: Response) -> None:
        if request.method != "POST" or request.path != "/v1/messages":
            await response.send_json(404, _error_body(404, f"Not found: {request.method} {request.path}"))
            return
        body = request.json()
        self.behaviour.record(Received(path=request.path, headers=dict(request.headers), body=body))
        step = self.behaviour.next_step()

        # The SDK sends the key as a bearer token; older clients send `x-api-key`.
        presented = {request.headers.get("x-api-key"), request.headers.get("authorization", "").removeprefix("Bearer ")}
        if self.behaviour.api_key not in presented:
            await response.send_json(401, _error_body(401, "invalid x-api-key"))
            return
        if step.status != 200:
            message = "Overloaded" if step.status == 529 else f"scripted failure {step.status}"
            await response.send_json(step.status, _error_body(step.status, message), retry_headers(step))
            return
        if not body.get("model") or not isinstance(body.get("max_tokens"), int) or not body.get("messages"):
            await response.send_json(400, _error_body(400, "model, max_tokens and messages are required"))
            return
        blocks = _cache_blocks(body)
        breakpoints = sum(1 for block in blocks if block.ttl is not None)
        if breakpoints > MAX_BREAKPOINTS:
            message = f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {breakpoints}."
            await response.send_json(400, _error_body(400, message))
            return

        lifetimes = [block.ttl for block in blocks if block.ttl is not None]
        if lifetimes != sorted(lifetimes, reverse=True):
            message = "a cache_control with a longer ttl must come before any with a shorter one"
            await response.send_json(400, _error_body(400, message))
            return

        problem = _tool_problem(body)
        if problem:
            await response.send_json(400, _error_body(400, problem))
            return

        usage = self._cache.use(str(body["model"]), blocks)
        forbidden = (body.get("tool_choice") or {}).get("type") == "none" or not body.get("tools")
        if step.tool_calls and not forbidden:
            await self._tool_use(response, body, usage, step)
            return
        answer = compose(step.answer or self._plain_answer(body), body["max_tokens"])
        stop_reason = "max_tokens" if answer.cut else "end_turn"
        serving = _Serving(str(body["model"]), usage, answer.tokens if not body.get("stream") else 1)
        with self._served_lock:
            self._served.append(serving)
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        if body.get("stream"):
            await self._stream(response, step, body, message_id, usage, answer, stop_reason, serving)
            return
        await asyncio.sleep(step.first_token_delay)
        await response.send_json(
            200,
            {
                **self._message(message_id, body, usage, output_tokens=answer.tokens),
                "content": [{"type": "text", "text": "".join(answer.pieces)}],
                "stop_reason": stop_reason,
            },
        )

    def _plain_answer(self, body: JsonObject) -> str:
        written = artifact_answer(body) if self.behaviour.writes_artifacts else None
        return written or self.behaviour.answer

    async def _tool_use(self, response: Response, body: JsonObject, usage: CacheUsage, step: Script) -> None:
        """A streamed answer that is only tool_use blocks, their input sent in pieces as the API does."""
        calls = [(f"toolu_{uuid.uuid4().hex[:20]}", name, json.dumps(arguments)) for name, arguments in step.tool_calls]
        output = sum(count(name + arguments) for _, name, arguments in calls)
        with self._served_lock:
            self._served.append(_Serving(str(body["model"]), usage, output))
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        await response.start_stream("text/event-stream", {"request-id": f"req_{message_id[4:]}"})
        start = self._message(message_id, body, usage, output_tokens=1)
        await response.send_chunk(_sse("message_start", {"type": "message_start", "message": start}))
        for index, (call_id, name, arguments) in enumerate(calls):
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            await response.send_chunk(
                _sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
            )
            for at in range(0, len(arguments), 16):
                delta = {"type": "input_json_delta", "partial_json": arguments[at : at + 16]}
                await response.send_chunk(
                    _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                )
            await response.send_chunk(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        await self._finish(response, usage, output_tokens=output, stop_reason="tool_use")

    @staticmethod
    async def _finish(response: Response, usage: CacheUsage, *, output_tokens: int, stop_reason: str) -> None:
        """A stream's end: message_delta with the final usage, message_stop."""
        # message_delta's usage has no `cache_creation` breakdown: message_start's has.
        final_usage = {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "output_tokens": output_tokens,
        }
        message_delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": final_usage,
        }
        await response.send_chunk(_sse("message_delta", message_delta))
        await response.send_chunk(_sse("message_stop", {"type": "message_stop"}))
        await response.end_stream()

    @staticmethod
    def _message(message_id: str, body: JsonObject, usage: CacheUsage, *, output_tokens: int) -> JsonObject:
        return {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage.report(), "output_tokens": output_tokens},
        }

    async def _stream(
        self,
        response: Response,
        step: Script,
        body: JsonObject,
        message_id: str,
        usage: CacheUsage,
        answer: Answer,
        stop_reason: str,
        serving: _Serving,
    ) -> None:
        """`serving.output_tokens` follows what was sent: a client gone away stops the sending."""
        pace = step.pace or self.behaviour.pace
        await response.start_stream("text/event-stream", {"request-id": f"req_{message_id[4:]}"})
        # As the API does: message_start reports the input side and a first output token.
        start = self._message(message_id, body, usage, output_tokens=1)
        await response.send_chunk(_sse("message_start", {"type": "message_start", "message": start}))
        block_start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        await response.send_chunk(_sse("content_block_start", block_start))
        await response.send_chunk(_sse("ping", {"type": "ping"}))
        await asyncio.sleep(step.first_token_delay)
        for sent, piece in enumerate(answer.pieces):
            if step.fail_after_tokens is not None and sent == step.fail_after_tokens:
                if step.failure == "disconnect":
                    response.drop()
                    return
                await response.send_chunk(_sse("error", _error_body(529, "Overloaded")))
                await response.end_stream()
                return
            if sent and pace:
                await asyncio.sleep(pace)
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
            await response.send_chunk(_sse("content_block_delta", delta))
            with self._served_lock:
                serving.output_tokens = max(1, answer.tokens_through[sent])
        await response.send_chunk(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        await self._finish(response, usage, output_tokens=answer.tokens, stop_reason=stop_reason)
