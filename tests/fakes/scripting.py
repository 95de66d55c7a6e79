"""What both fakes share: the script of misbehaviours, the answer, the clock, the request log.

A fake answers each request with the next `Script` step queued by the test (or its default
when the queue is empty), so a test reads as the story it checks:

    fake.script(Script.reject(429, retry_after=0.01), Script.reject(529), Script())

Tokens are counted with cl100k_base (`parley.kit.tokens`), a deterministic stand-in for the
providers' own tokenizers: the fakes' figures are exact for the fakes and plausible for the
real thing, which is all a test of the mapping needs.
"""

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from parley.kit.tokens import encoding
from tests.fakes.http_server import FakeHttpServer, JsonObject

DEFAULT_ANSWER = "The boiler is descaled every 200 shots with citric acid [1]. Rinse it twice afterwards [1]."


@dataclass(frozen=True, slots=True)
class Script:
    """One response. The default is a well-behaved streamed answer."""

    status: int = 200  # not 200: an error response, before any byte of an answer
    retry_after: float | None = None  # seconds, sent as `retry-after` (and `retry-after-ms`)
    error_code: str | None = None  # e.g. OpenAI's "insufficient_quota" on a 429
    first_token_delay: float = 0.0  # headers go out at once; the first token waits this long
    pace: float = 0.0  # seconds between tokens
    fail_after_tokens: int | None = None  # stream this many tokens, then fail
    failure: Literal["error_event", "disconnect"] = "error_event"  # how it fails mid-stream
    answer: str | None = None  # overrides the fake's answer for this response
    # Answer with these tool calls (name, arguments) instead of text — unless the request forbids
    # tools (`tool_choice` none), as the real APIs do.
    tool_calls: tuple[tuple[str, JsonObject], ...] = ()

    @classmethod
    def reject(cls, status: int, *, retry_after: float | None = None, error_code: str | None = None) -> "Script":
        return cls(status=status, retry_after=retry_after, error_code=error_code)

    @classmethod
    def break_after(cls, tokens: int, *, failure: Literal["error_event", "disconnect"] = "error_event") -> "Script":
        return cls(fail_after_tokens=tokens, failure=failure)

    @classmethod
    def call(cls, *calls: tuple[str, JsonObject]) -> "Script":
        """The model asks for these tools: `Script.call(("get_scene", {"scene": "3"}))`."""
        return cls(tool_calls=calls)

    @classmethod
    def stall(cls, seconds: float) -> "Script":
        return cls(first_token_delay=seconds)


@dataclass(frozen=True, slots=True)
class Received:
    """A request as the fake saw it, for tests to assert what the client sent."""

    path: str
    headers: dict[str, str]
    body: JsonObject


@dataclass
class Behaviour:
    """The mutable state of a fake, shared by the test's thread and the server's."""

    answer: str = DEFAULT_ANSWER
    api_key: str = "test-key"
    # Answer ingestion's artifact prompts as a model would (artifact_answers); False: with `answer`.
    writes_artifacts: bool = True
    pace: float = 0.0
    default: Script = field(default_factory=Script)
    _queue: deque[Script] = field(default_factory=deque)
    _received: list[Received] = field(default_factory=list)
    _clock_offset: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *steps: Script) -> None:
        with self._lock:
            self._queue.extend(steps)

    def next_step(self) -> Script:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def reset(self) -> None:
        """Forget the script and the log (not the cache: that is `forget_cache` on a fake that has one)."""
        with self._lock:
            self._queue.clear()
            self._received.clear()

    def now(self) -> float:
        return time.monotonic() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock on, so cache lifetimes can be tested without waiting."""
        with self._lock:
            self._clock_offset += seconds


def count(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


@dataclass(frozen=True, slots=True)
class Answer:
    pieces: list[str]  # one per token, except a character split across tokens goes out with its last one
    tokens: int
    cut: bool  # stopped at max_tokens
    tokens_through: list[int] = field(default_factory=list)  # tokens sent once each piece is


def compose(answer: str, max_tokens: int) -> Answer:
    tokens = encoding().encode(answer, disallowed_special=())
    kept = tokens[:max_tokens]
    pieces: list[str] = []
    through: list[int] = []
    pending = b""
    for sent, token in enumerate(kept, 1):
        pending += encoding().decode_single_token_bytes(token)
        try:
            pieces.append(pending.decode("utf-8"))
            through.append(sent)
            pending = b""
        except UnicodeDecodeError:
            continue
    return Answer(pieces=pieces, tokens=len(kept), cut=len(tokens) > max_tokens, tokens_through=through)


def retry_headers(step: Script) -> dict[str, str]:
    if step.retry_after is None:
        return {}
    # Both SDKs read `retry-after-ms` first; `retry-after` is the standard one, in whole seconds.
    return {"retry-after": str(max(0, round(step.retry_after))), "retry-after-ms": str(int(step.retry_after * 1000))}


class ScriptedServer(FakeHttpServer):
    """A fake provider: `script(...)` queues misbehaviours, `received` logs requests."""

    def __init__(self, *, answer: str | None = None) -> None:
        super().__init__()
        self.behaviour = Behaviour() if answer is None else Behaviour(answer=answer)

    @property
    def api_key(self) -> str:
        return self.behaviour.api_key

    def script(self, *steps: Script) -> None:
        self.behaviour.script(*steps)

    @property
    def received(self) -> list[Received]:
        return self.behaviour.received

    def reset(self) -> None:
        self.behaviour.reset()

    def advance_clock(self, seconds: float) -> None:
        self.behaviour.advance_clock(seconds)
