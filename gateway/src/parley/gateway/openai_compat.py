"""A chat turn asked and answered in OpenAI's Chat Completions words.

What the OpenAI routes need beyond translation: which collections a `model` names
(`parley/<collection>[+<collection>…][@<provider>[/<model>]]`), the question a list of messages
asks, and the turn's events read as one sequence of text pieces and an ending — with `stop`
sequences cut here, at the gateway, since no provider call of chat-svc takes them: the turn is
cancelled at the stop (billed for what was produced) and the text ends before it.
"""

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from parley.gateway import chat_turns
from parley.gateway.api.deps import Services
from parley.gateway.errors import ApiError
from parley.gateway.events import FollowerBehind, TurnIdle, turn_events
from parley.gateway.schemas import optional_usd
from parley.gateway.schemas.chat import Source
from parley.gateway.schemas.openai import ChatCompletionIn, CompletionUsage
from parley.gateway.store import Principal
from parley.kit.contracts import (
    MAX_COLLECTIONS_PER_CONVERSATION,
    MAX_MESSAGE_CHARS,
    MAX_OUTPUT_TOKENS,
    MODEL_NAME,
    tier_named,
)
from parley.kit.paging import MAX_PAGE_SIZE
from parley.v1 import chat_pb2, common_pb2, events_pb2, ingestion_pb2

log = logging.getLogger(__name__)

PREFIX = "parley/"
_HISTORY_HEADER = "Earlier in this conversation:\n"
LIST_PAGES = 20  # 2,000 collections: past that, name a collection by its id


@dataclass(frozen=True, slots=True)
class Target:
    """What a request's `model` asks: collections (names or ids) and the provider and model."""

    collections: tuple[str, ...] = ()
    provider: str = ""
    model: str = ""


def parse_model(spelled: str) -> Target:
    """`parley/Manuals+Notes@anthropic/claude-haiku-4-5` → collections Manuals and Notes,
    provider anthropic, model claude-haiku-4-5. `parley` alone names no collection (a continued
    conversation keeps its own); anything else is `<provider>/<model>` or a model id of the
    default provider."""
    if spelled == "parley" or spelled.startswith(PREFIX):
        scope, _, target = spelled.removeprefix("parley").removeprefix("/").partition("@")
        refs = tuple(ref for ref in scope.split("+") if ref)
    else:
        refs, target = (), spelled
    provider, slash, model = target.partition("/")
    if not slash and target and not spelled.startswith(PREFIX):
        provider, model = "", target  # a bare model id: the default provider's
    if len(refs) > MAX_COLLECTIONS_PER_CONVERSATION:
        raise ApiError(400, "invalid_argument", f"at most {MAX_COLLECTIONS_PER_CONVERSATION} collections a question")
    if not re.fullmatch(MODEL_NAME, provider) or not re.fullmatch(MODEL_NAME, model):
        raise ApiError(404, "model_not_found", f"the model `{spelled}` does not exist")
    return Target(refs, provider, model)


async def collection_ids(services: Services, who: Principal, refs: tuple[str, ...], spelled: str) -> list[str]:
    """The ids of the collections a model names, by id or by name; any other is a 404 as OpenAI
    words it (`model_not_found`), since the model is what named it."""
    if not refs:
        return []
    if all(_is_id(ref) for ref in refs):
        # Ids need no lookup: StartTurn checks each collection is the caller's (404 otherwise),
        # and a turn spares a call to ingestion.
        return list(dict.fromkeys(str(uuid.UUID(ref)) for ref in refs))
    by_ref: dict[str, str] = {}
    token = ""
    for _ in range(LIST_PAGES):
        page = await services.ingestion.list_collections(
            who, common_pb2.PageRequest(page_size=MAX_PAGE_SIZE, page_token=token)
        )
        for collection in page.collections:
            by_ref[collection.id] = collection.id
            by_ref.setdefault(collection.name, collection.id)
        token = page.next_page_token
        if not token or all(ref in by_ref for ref in refs):
            break
    missing = [ref for ref in refs if ref not in by_ref]
    if missing:
        raise ApiError(404, "model_not_found", f"the model `{spelled}` does not exist: no collection `{missing[0]}`")
    return list(dict.fromkeys(by_ref[ref] for ref in refs))


def _is_id(ref: str) -> bool:
    try:
        uuid.UUID(ref)
    except ValueError:
        return False
    return True


def model_name(collection: ingestion_pb2.Collection) -> str:
    """How /v1/models spells a collection: by name, unless the name would not read back (it holds
    a `+` or `@`, or is not a valid model name) — then by id."""
    name = collection.name
    readable = name and "+" not in name and "@" not in name and name == name.strip() and "\n" not in name
    return PREFIX + (name if readable else collection.id)


def question(body: ChatCompletionIn) -> str:
    """What the turn asks: the last message, a user's. Without a conversation id the messages
    before it are the only history there is, so they go with the question as a transcript
    (the newest that fit in the message limit); a continued conversation has its own history
    in chat-svc, and earlier messages are not sent twice."""
    *earlier, last = body.messages
    if last.role != "user":
        raise ApiError(400, "invalid_argument", "the last message must be the user's question")
    for message in body.messages:
        if message.has_non_text():
            raise ApiError(400, "invalid_argument", "only text content is supported")
    asked = last.text().strip()
    if not asked:
        raise ApiError(400, "invalid_argument", "the question is empty")
    if len(asked) > MAX_MESSAGE_CHARS:
        raise ApiError(400, "context_length_exceeded", f"the question is over {MAX_MESSAGE_CHARS} characters")
    if conversation_of(body) or not earlier:
        return asked
    room = MAX_MESSAGE_CHARS - len(asked) - len(_HISTORY_HEADER) - 2
    kept: list[str] = []
    for message in reversed(earlier):
        line = f"{message.role}: {message.text().strip()}\n"
        if len(line) > room:
            break
        kept.append(line)
        room -= len(line)
    if not kept:
        return asked
    return _HISTORY_HEADER + "".join(reversed(kept)) + "\n" + asked


def conversation_of(body: ChatCompletionIn) -> str:
    return body.conversation_id or (body.metadata or {}).get("conversation_id", "")


def collections_of(body: ChatCompletionIn) -> list[str]:
    if body.collection_ids:
        return body.collection_ids
    listed = (body.metadata or {}).get("collection_ids", "")
    return [part.strip() for part in listed.split(",") if part.strip()]


def max_tokens(body: ChatCompletionIn) -> int:
    """0 is chat-svc's default; a cap over Parley's ceiling is lowered to it, as clients often
    send a model's whole context size."""
    asked = body.max_completion_tokens or body.max_tokens or 0
    return min(asked, MAX_OUTPUT_TOKENS)


async def start(services: Services, who: Principal, body: ChatCompletionIn) -> "Asked":
    target = parse_model(body.model)
    await services.budgets.before_spending(services, who)
    conversation = conversation_of(body)
    ids = await collection_ids(services, who, target.collections, body.model)
    ids = list(dict.fromkeys([*ids, *collections_of(body)]))
    if not conversation and not ids:
        raise ApiError(
            400,
            "invalid_argument",
            "name the collections to ask: model `parley/<collection>` (see GET /v1/models), "
            "or continue a conversation with `conversation_id`",
        )
    request = chat_pb2.StartTurnRequest(
        conversation_id=conversation,
        collection_ids=[] if conversation else ids,
        message=question(body),
        tier=chat_pb2.Tier.Name(tier_named(body.tier)),
        max_tokens=max_tokens(body),
        provider=target.provider,
        model=target.model,
    )
    if body.user:
        log.info("openai user", extra={"fields": {"openai_user": body.user}})
    started = await services.chat.start_turn(who, request)
    return Asked(
        turn=chat_turns.StartedTurn(started.conversation_id, started.turn_id),
        model=body.model,
        stops=tuple(body.stops()),
    )


@dataclass(slots=True)
class Asked:
    turn: chat_turns.StartedTurn
    model: str
    stops: tuple[str, ...] = ()
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.turn.turn_id}"


@dataclass(frozen=True, slots=True)
class Ending:
    """How a turn ended: `finish_reason` stop | length, or `error` (code, message) when it failed."""

    finish_reason: str
    citations: list[Source]
    usage: CompletionUsage | None
    model: str
    error: tuple[str, str] | None = None


def completion_usage(event: events_pb2.TurnUsage) -> CompletionUsage:
    counted = event.usage
    prompt = counted.input_tokens + counted.cache_read_tokens + counted.cache_write_tokens
    return CompletionUsage(
        prompt_tokens=prompt,
        completion_tokens=counted.output_tokens,
        total_tokens=prompt + counted.output_tokens,
        prompt_tokens_details={"cached_tokens": counted.cache_read_tokens},
        cost_usd=optional_usd(event, "cost_micros"),
        cache_write_tokens=counted.cache_write_tokens,
    )


class _StopCutter:
    """Holds back the last few characters of the text until they cannot begin a stop sequence,
    so a stop split across two deltas is still found."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.hold = max((len(stop) for stop in stops), default=1) - 1
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text to send now, whether a stop was reached)."""
        if not self.stops:
            return text, False
        self.pending += text
        found = [index for index in (self.pending.find(stop) for stop in self.stops) if index >= 0]
        if found:
            out, self.pending = self.pending[: min(found)], ""
            return out, True
        cut = max(len(self.pending) - self.hold, 0)
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


async def answer(services: Services, who: Principal, asked: Asked) -> AsyncIterator[str | Ending]:
    """The turn as text pieces, then exactly one Ending. The caller's token rate limit is charged
    with the turn's tokens, as `POST /v1/chat` does."""
    cutter = _StopCutter(asked.stops)
    stopped = False
    citations: list[Source] = []
    usage: CompletionUsage | None = None
    model = ""
    try:
        async for event in turn_events(
            services.js, asked.turn.subject, idle_seconds=services.settings.turn_idle_seconds
        ):
            kind = event.WhichOneof("kind")
            if kind == "delta":
                if stopped:
                    continue
                text, stopped = cutter.feed(event.delta.text)
                if text:
                    yield text
                if stopped:
                    await _cancel(services, who, asked)
            elif kind == "sources":
                citations = [Source.of(source) for source in event.sources.sources]
            elif kind == "usage":
                await services.limiter.charge_tokens(services.sessions, who, _tokens(event.usage))
                usage, model = completion_usage(event.usage), event.usage.model
            elif kind == "end":
                rest = cutter.flush()
                if rest:
                    yield rest
                reason = "stop" if stopped else ("length" if event.end.finish_reason == "length" else "stop")
                yield Ending(reason, citations, usage, model or asked.model)
                return
            elif kind == "error":
                if stopped and event.error.code == "cancelled":
                    yield Ending("stop", citations, usage, model or asked.model)
                else:
                    error = (event.error.code or "turn_failed", event.error.message)
                    yield Ending("error", citations, usage, model or asked.model, error=error)
                return
    except TurnIdle:
        yield Ending("error", citations, usage, asked.model, error=("timeout", "the answer stopped arriving"))
        return
    except FollowerBehind:
        # The client read slower than the answer was written; the turn goes on and is stored.
        message = f"this stream fell too far behind the answer; the conversation {asked.turn.conversation_id} keeps it"
        yield Ending("error", citations, usage, asked.model, error=("behind", message))
        return
    yield Ending("error", citations, usage, asked.model, error=("turn_failed", "the turn ended without an answer"))


async def _cancel(services: Services, who: Principal, asked: Asked) -> None:
    """Stop the turn at a stop sequence; a turn that ended meanwhile needs no cancel."""
    try:
        await services.chat.cancel_turn(who, asked.turn.conversation_id, asked.turn.turn_id)
    except Exception:  # the turn already ended, or chat-svc is away: the text is cut either way
        log.info("cancelling a turn at its stop sequence failed", exc_info=True)


def _tokens(usage: events_pb2.TurnUsage) -> int:
    counted = usage.usage
    return counted.input_tokens + counted.output_tokens + counted.cache_read_tokens + counted.cache_write_tokens
