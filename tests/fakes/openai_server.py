"""A fake of OpenAI's Chat Completions API (`POST /v1/chat/completions`), whole and streamed, and
of its embeddings API (`POST /v1/embeddings`).

Point the real SDK at it: `AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key)`; it
stands as well for any OpenAI-compatible server reached by base URL.

Streamed, it sends `chat.completion.chunk` lines: a first chunk with the role, one per token,
one with `finish_reason`, then, when the request asked `stream_options.include_usage`, a last
chunk with no choices and the usage, then `data: [DONE]`.

Prompt caching is OpenAI's automatic kind: a prompt of at least 1,024 tokens is cached, and a
later prompt reads the longest cached prefix in steps of 128 tokens (1,024, 1,152, ...).
`prompt_tokens` includes `prompt_tokens_details.cached_tokens`, as the real API reports it.
The prompt is tokenised as each message's role and content, one after another (cl100k_base).

Embeddings are deterministic and lexical: each lowercase word of an input is hashed into one of
`dimensions` signed buckets (1,536 when the request does not ask), and the vector is scaled to
unit length, so inputs that share words point the same way, as real embeddings of related texts
do. `usage.prompt_tokens` is the inputs' cl100k count (text-embedding-3's own tokenizer). The
API's limits are enforced: at most 2,048 non-empty inputs, 8,192 tokens each, 300,000 in all.
Each request is one `Script` step, so `script(Script.reject(429), ...)` makes a batch fail.
"""

import asyncio
import base64
import hashlib
import json
import math
import re
import struct
import time
import uuid
from dataclasses import dataclass

from parley.kit.tokens import encoding
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

MIN_CACHED = 1024
CACHE_STEP = 128
CACHE_TTL = 300.0

ERRORS = {  # status: (type, code), as OpenAI words them
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


def _error_body(status: int, message: str, code: str | None = None) -> JsonObject:
    kind, default_code = ERRORS.get(status, ("server_error", None))
    if code == "insufficient_quota":
        kind = "insufficient_quota"  # the spend limit: a 429 that no retry will fix
    return {"error": {"message": message, "type": kind, "param": None, "code": code or default_code}}


@dataclass(frozen=True, slots=True)
class _Prompt:
    tokens: int
    prefix_keys: dict[int, str]  # cacheable length -> hash of the prompt's first that many tokens


class _PrefixCache:
    def __init__(self, behaviour: Behaviour) -> None:
        self._behaviour = behaviour
        self._expires: dict[str, float] = {}

    def use(self, prompt: _Prompt) -> int:
        now = self._behaviour.now()
        cached = max(
            (n for n, key in prompt.prefix_keys.items() if self._expires.get(key, 0.0) > now),
            default=0,
        )
        for key in prompt.prefix_keys.values():
            self._expires[key] = now + CACHE_TTL
        return cached

    def forget(self) -> None:
        self._expires.clear()


def _prompt(body: JsonObject) -> _Prompt:
    text = "".join(
        f"<|{message.get('role')}|>{_content_text(message.get('content'))}" for message in body.get("messages") or []
    )
    tokens = encoding().encode(text, disallowed_special=())
    keys: dict[int, str] = {}
    for n in range(MIN_CACHED, len(tokens) + 1, CACHE_STEP):
        keys[n] = hashlib.sha256(f"{body.get('model')}:{tokens[:n]}".encode()).hexdigest()
    return _Prompt(tokens=len(tokens), prefix_keys=keys)


def _content_text(content: object) -> str:
    if isinstance(content, list):  # content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


EMBEDDING_DIMENSIONS = 1536
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_INPUT_TOKENS = 8192
MAX_EMBEDDING_REQUEST_TOKENS = 300_000
_WORD = re.compile(r"\w+")


def fake_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The fake's vector of one input: its words hashed into signed buckets, unit length."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[(digest >> 1) % dimensions] += 1.0 if digest & 1 else -1.0
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


def _data(payload: JsonObject | str) -> bytes:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()


class FakeOpenAI(ScriptedServer):
    """`forget_cache` empties the prefix cache; `advance_clock` ages it."""

    def __init__(self, *, answer: str | None = None) -> None:
        super().__init__(answer=answer)
        self._cache = _PrefixCache(self.behaviour)

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"  # the SDK appends /chat/completions

    def forget_cache(self) -> None:
        self._cache.forget()

    @property
    def embedded_inputs(self) -> list[str]:
        """Every input of every embeddings request answered or refused, in order."""
        return [
            text for received in self.received if received.path == "/v1/embeddings" for text in received.body["input"]
        ]

    async def handle(self, request: Request, response: Response) -> None:
        if request.method != "POST" or request.path not in ("/v1/chat/completions", "/v1/embeddings"):
            await response.send_json(404, _error_body(404, f"Unknown request URL: {request.method} {request.path}"))
            return
        body = request.json()
        self.behaviour.record(Received(path=request.path, headers=dict(request.headers), body=body))
        step = self.behaviour.next_step()

        if request.headers.get("authorization") != f"Bearer {self.behaviour.api_key}":
            await response.send_json(401, _error_body(401, "Incorrect API key provided."))
            return
        if step.status != 200:
            message = "You exceeded your current quota" if step.error_code else f"scripted failure {step.status}"
            body_out = _error_body(step.status, message, step.error_code)
            await response.send_json(step.status, body_out, retry_headers(step))
            return
        if request.path == "/v1/embeddings":
            await self._embeddings(body, response)
            return
        if not body.get("model") or not body.get("messages"):
            await response.send_json(400, _error_body(400, "model and messages are required"))
            return

        prompt = _prompt(body)
        cached = self._cache.use(prompt)
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
        written = artifact_answer(body) if self.behaviour.writes_artifacts else None
        answer = compose(step.answer or written or self.behaviour.answer, int(max_tokens))
        calls: list[JsonObject] = []
        if step.tool_calls and body.get("tools") and body.get("tool_choice") != "none":
            calls = [
                {"id": f"call_{uuid.uuid4().hex[:20]}", "name": name, "arguments": json.dumps(arguments)}
                for name, arguments in step.tool_calls
            ]
            answer = Answer(pieces=[], tokens=sum(count(c["name"] + c["arguments"]) for c in calls), cut=False)
        usage = {
            "prompt_tokens": prompt.tokens,
            "completion_tokens": answer.tokens,
            "total_tokens": prompt.tokens + answer.tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": body["model"]}
        finish_reason = "tool_calls" if calls else "length" if answer.cut else "stop"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await self._stream(response, step, base, answer, finish_reason, usage if include_usage else None, calls)
            return
        await asyncio.sleep(step.first_token_delay)
        reply = {"role": "assistant", "content": "".join(answer.pieces), "refusal": None}
        choice = {"index": 0, "message": reply, "finish_reason": finish_reason, "logprobs": None}
        await response.send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})

    async def _embeddings(self, body: JsonObject, response: Response) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not body.get("model") or not isinstance(inputs, list) or not inputs:
            await response.send_json(400, _error_body(400, "model and input are required"))
            return
        if len(inputs) > MAX_EMBEDDING_INPUTS:
            await response.send_json(400, _error_body(400, f"'$.input' must have at most {MAX_EMBEDDING_INPUTS} items"))
            return
        if any(not isinstance(text, str) or not text for text in inputs):
            await response.send_json(400, _error_body(400, "'$.input' is invalid: empty strings are not accepted"))
            return
        counts = [count(text) for text in inputs]
        if max(counts) > MAX_EMBEDDING_INPUT_TOKENS or sum(counts) > MAX_EMBEDDING_REQUEST_TOKENS:
            await response.send_json(400, _error_body(400, "This model's maximum context length was exceeded"))
            return
        dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        data = []
        for index, text in enumerate(inputs):
            vector = fake_embedding(text, dimensions)
            if body.get("encoding_format") == "base64":
                encoded: object = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            else:
                encoded = vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        usage = {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}
        await response.send_json(200, {"object": "list", "data": data, "model": body["model"], "usage": usage})

    async def _stream(
        self,
        response: Response,
        step: Script,
        base: JsonObject,
        answer: Answer,
        finish_reason: str,
        usage: JsonObject | None,
        calls: list[JsonObject] | None = None,
    ) -> None:
        pace = step.pace or self.behaviour.pace
        # With include_usage every chunk carries `usage: null` but the last.
        chunk = {**base, "object": "chat.completion.chunk", **({"usage": None} if usage is not None else {})}

        def choice(delta: JsonObject, finish: str | None = None) -> JsonObject:
            return {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

        await response.start_stream("text/event-stream")
        await asyncio.sleep(step.first_token_delay)
        await response.send_chunk(_data(choice({"role": "assistant", "content": "", "refusal": None})))
        for sent, piece in enumerate(answer.pieces):
            if step.fail_after_tokens is not None and sent == step.fail_after_tokens:
                if step.failure == "disconnect":
                    response.drop()
                    return
                await response.send_chunk(_data(_error_body(500, "The server had an error processing your request.")))
                await response.end_stream()
                return
            if sent and pace:
                await asyncio.sleep(pace)
            await response.send_chunk(_data(choice({"content": piece})))
        for index, call in enumerate(calls or []):  # each call's name first, its arguments in pieces
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            await response.send_chunk(_data(choice({"tool_calls": [head]})))
            arguments = str(call["arguments"])
            for at in range(0, len(arguments), 16):
                more = {"index": index, "function": {"arguments": arguments[at : at + 16]}}
                await response.send_chunk(_data(choice({"tool_calls": [more]})))
        await response.send_chunk(_data(choice({}, finish_reason)))
        if usage is not None:
            await response.send_chunk(_data({**chunk, "choices": [], "usage": usage}))
        await response.send_chunk(_data("[DONE]"))
        await response.end_stream()
