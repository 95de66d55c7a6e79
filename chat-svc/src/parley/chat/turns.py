"""A chat turn: fetch context, build the prompt, stream the answer, store it, meter it.

`start` returns at once with the turn's ids; the turn runs as a task of this process and
publishes every event on `chat.stream.<conversation>.<turn>`. Both messages, their sources
and usage, and the usage event (outbox) are committed in one transaction before `end` is
published, so a client that sees `end` finds the conversation stored.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from parley.chat import store
from parley.chat.clients import RetrievalClient
from parley.chat.config import Settings
from parley.chat.context_builder import Prompt, Turn, build_prompt
from parley.chat.events import CANCEL_SUBJECTS, TurnStream, cancel_subject
from parley.chat.providers import Finished, LlmProvider, TextDelta
from parley.kit.contracts import tier_budget, turn_subject
from parley.kit.db import Sessions
from parley.kit.errors import InvalidInput, NotFound
from parley.kit.identity import Identity
from parley.kit.ids import as_uuid
from parley.kit.outbox import OutboxRelay
from parley.v1 import chat_pb2, common_pb2, events_pb2

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 8_000
MAX_SEARCH_QUERY_CHARS = 2_000  # retrieval's limit for a query
MAX_COLLECTIONS = 20
MAX_OUTPUT_TOKENS = 8_192
SNIPPET_CHARS = 280
TITLE_CHARS = 60


@dataclass(frozen=True, slots=True)
class TurnRequest:
    conversation_id: str
    collection_ids: tuple[str, ...]
    message: str
    tier: int
    max_tokens: int
    provider: str
    model: str
    reservation_id: str


@dataclass(frozen=True, slots=True)
class StartedTurn:
    conversation_id: str
    turn_id: str
    subject: str


def validate(request: TurnRequest, *, known_providers: Sequence[str]) -> None:
    """The rules a message must meet; the gateway checks them too, this is the second lock."""
    message = request.message
    if not message.strip():
        raise InvalidInput("message must not be empty")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidInput(f"message is {len(message)} characters; the limit is {MAX_MESSAGE_CHARS}")
    if "\x00" in message:
        raise InvalidInput("message must not contain NUL characters")
    if not request.conversation_id and not request.collection_ids:
        raise InvalidInput("a new conversation needs at least one collection id")
    if len(request.collection_ids) > MAX_COLLECTIONS:
        raise InvalidInput(f"at most {MAX_COLLECTIONS} collections per conversation")
    if not 0 <= request.max_tokens <= MAX_OUTPUT_TOKENS:
        raise InvalidInput(f"max_tokens must be between 1 and {MAX_OUTPUT_TOKENS}")
    if request.provider and request.provider not in known_providers:
        raise InvalidInput(f"unknown provider {request.provider!r}; known: {', '.join(known_providers)}")


def title_from(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def _source(passage_index: int, hit: Any) -> chat_pb2.Source:
    return chat_pb2.Source(
        index=passage_index,
        chunk_id=hit.chunk_id,
        document_id=hit.document_id,
        collection_id=hit.collection_id,
        document_title=hit.document_title,
        heading=hit.heading,
        snippet=hit.text[:SNIPPET_CHARS],
        score=hit.score,
    )


def source_to_json(source: chat_pb2.Source) -> dict[str, Any]:
    return {
        "index": source.index,
        "chunk_id": source.chunk_id,
        "document_id": source.document_id,
        "collection_id": source.collection_id,
        "document_title": source.document_title,
        "heading": source.heading,
        "snippet": source.snippet,
        "score": source.score,
    }


class TurnRunner:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: Sessions,
        nc: NatsClient,
        js: JetStreamContext,
        retrieval: RetrievalClient,
        providers: dict[str, LlmProvider],
        relay: OutboxRelay,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._nc = nc
        self._js = js
        self._retrieval = retrieval
        self._providers = providers
        self._relay = relay
        self._running = RunningTurns()

    async def start(self, identity: Identity, request: TurnRequest) -> StartedTurn:
        validate(request, known_providers=list(self._providers))
        owner = store.Owner(identity.tenant_id, identity.user_id)
        async with self._sessions.begin() as session:
            if request.conversation_id:
                conversation = await store.get_conversation(
                    session=session, owner=owner, conversation_id=request.conversation_id
                )
                if conversation is None:
                    raise NotFound(f"conversation {request.conversation_id} not found")
                conversation_id, collection_ids = conversation.id, tuple(conversation.collection_ids)
            else:
                collection_ids = tuple(dict.fromkeys(request.collection_ids))
                conversation_id = await store.create_conversation(
                    session=session, owner=owner, title=title_from(request.message), collection_ids=collection_ids
                )
        turn_id = str(uuid.uuid4())
        task = asyncio.create_task(
            self._run(identity, owner, conversation_id, turn_id, collection_ids, request), name=f"turn:{turn_id}"
        )
        self._running.add(turn_id, owner=owner, conversation_id=conversation_id, task=task)
        return StartedTurn(conversation_id, turn_id, turn_subject(conversation_id, turn_id))

    async def cancel(self, owner: store.Owner, conversation_id: str, turn_id: str) -> bool:
        """Ask every replica; the one running the caller's turn cancels it and answers."""
        command = events_pb2.CancelTurnCommand(
            tenant_id=owner.tenant_id, user_id=owner.user_id, conversation_id=conversation_id, turn_id=turn_id
        )
        turn_uuid = as_uuid(turn_id)  # it becomes a subject token: never a wildcard
        if turn_uuid is None:
            return False
        try:
            await self._nc.request(
                cancel_subject(str(turn_uuid)), command.SerializeToString(), timeout=self._settings.cancel_wait_seconds
            )
        except (NoRespondersError, NatsTimeoutError):
            return False
        return True

    async def serve_cancels(self) -> None:
        """Take cancel requests for the turns this replica runs (their owners' only)."""

        async def on_request(message: Msg) -> None:
            command = events_pb2.CancelTurnCommand.FromString(message.data)
            owner = store.Owner(command.tenant_id, command.user_id)
            if self._running.cancel(owner, command.conversation_id, command.turn_id):
                await message.respond(b"")

        await self._nc.subscribe(CANCEL_SUBJECTS, cb=on_request)

    async def drain(self, grace_seconds: float) -> None:
        await self._running.drain(grace_seconds)

    async def _run(
        self,
        identity: Identity,
        owner: store.Owner,
        conversation_id: str,
        turn_id: str,
        collection_ids: tuple[str, ...],
        request: TurnRequest,
    ) -> None:
        provider = self._providers[request.provider or self._settings.default_provider]
        turn = _Turn(
            identity=identity,
            owner=owner,
            conversation_id=conversation_id,
            turn_id=turn_id,
            request=request,
            provider=provider.name,
            model=request.model or provider.default_model,
            started=time.monotonic(),
            stream=TurnStream(
                self._js,
                conversation_id=conversation_id,
                turn_id=turn_id,
                frame_chars=self._settings.frame_chars,
                frame_seconds=self._settings.frame_seconds,
                publish_timeout=self._settings.publish_timeout_seconds,
            ),
        )
        try:
            prompt = await self._prompt(turn, collection_ids)
            answer: list[str] = []
            finished: Finished | None = None
            max_tokens = request.max_tokens or self._settings.default_max_tokens
            async for event in provider.stream(prompt, model=turn.model, max_tokens=max_tokens):
                if isinstance(event, TextDelta):
                    answer.append(event.text)
                    await turn.stream.delta(event.text)
                else:
                    finished = event
            assert finished is not None, "a provider stream ends with Finished"
            # From here the answer is whole: storing it is no longer cancelled, and its failures
            # after the commit are not a failed turn (the stored conversation is the truth).
            self._running.finishing(turn_id)
            await self._complete(turn, prompt, "".join(answer), finished)
        except asyncio.CancelledError:
            await self._fail(turn, code="cancelled", message="the turn was cancelled")
            raise
        except Exception as error:  # a turn's failure is reported to its client, not raised
            log.exception("turn failed", extra={"fields": {"turn_id": turn_id}})
            await self._fail(turn, code=_error_code(error), message=_public_message(error))

    async def _prompt(self, turn: "_Turn", collection_ids: tuple[str, ...]) -> Prompt:
        async with self._sessions() as session:
            earlier = await store.conversation_messages(
                session=session,
                tenant_id=turn.owner.tenant_id,
                conversation_id=turn.conversation_id,
                last=self._settings.history_messages,
            )
        hits = await self._retrieval.search(
            turn.identity,
            # Retrieval takes queries up to its limit; a long message most often asks at its end.
            query=turn.request.message[-MAX_SEARCH_QUERY_CHARS:],
            collection_ids=collection_ids,
            k=self._settings.search_k,
        )
        history = [Turn(role=row.role, content=row.content) for row in earlier]
        return build_prompt(
            question=turn.request.message, hits=hits, history=history, budget=tier_budget(turn.request.tier)
        )

    async def _complete(self, turn: "_Turn", prompt: Prompt, answer: str, finished: Finished) -> None:
        sources = [_source(passage.index, passage.hit) for passage in prompt.passages]
        usage = common_pb2.TokenUsage(
            input_tokens=finished.input_tokens,
            output_tokens=finished.output_tokens,
            cache_read_tokens=finished.cache_read_tokens,
            cache_write_tokens=finished.cache_write_tokens,
        )
        async with self._sessions.begin() as session:
            user_message_id, assistant_message_id = await store.add_turn(
                session=session,
                owner=turn.owner,
                conversation_id=turn.conversation_id,
                turn_id=turn.turn_id,
                question=store.StoredMessage(role="user", content=turn.request.message, sources=[]),
                answer=store.StoredMessage(
                    role="assistant",
                    content=answer,
                    sources=[source_to_json(source) for source in sources],
                    model=turn.model,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cache_read_tokens=usage.cache_read_tokens,
                    cache_write_tokens=usage.cache_write_tokens,
                ),
                usage_event=turn.usage_event(usage, success=True),
            )
        self._relay.notify()
        try:
            await turn.stream.sources(sources)
            await turn.stream.usage(usage, model=turn.model)
            await turn.stream.end(
                user_message_id=user_message_id,
                assistant_message_id=assistant_message_id,
                finish_reason=finished.finish_reason,
            )
        except Exception:
            # The answer is stored and metered; a client that missed the end reads the conversation.
            log.exception("could not announce a stored turn", extra={"fields": {"turn_id": turn.turn_id}})

    async def _fail(self, turn: "_Turn", *, code: str, message: str) -> None:
        """Tell the client, and record the failed request so its budget hold is released."""
        try:
            async with self._sessions.begin() as session:
                await store.record_usage(
                    session=session, usage_event=turn.usage_event(common_pb2.TokenUsage(), success=False)
                )
            self._relay.notify()
            await turn.stream.error(code=code, message=message)
        except Exception:  # nothing more to tell anyone; the hold expires on its own
            log.exception("could not report a failed turn", extra={"fields": {"turn_id": turn.turn_id}})


@dataclass(slots=True)
class _Running:
    owner: store.Owner
    conversation_id: str
    task: asyncio.Task[None]
    finishing: bool = False


class RunningTurns:
    """The turns this process runs, each with its owner. A turn whose answer is whole (it is
    being stored) is past cancelling."""

    def __init__(self) -> None:
        self._turns: dict[str, _Running] = {}

    def add(self, turn_id: str, *, owner: store.Owner, conversation_id: str, task: asyncio.Task[None]) -> None:
        self._turns[turn_id] = _Running(owner, conversation_id, task)
        task.add_done_callback(lambda _: self._turns.pop(turn_id, None))

    def finishing(self, turn_id: str) -> None:
        self._turns[turn_id].finishing = True

    def cancel(self, owner: store.Owner, conversation_id: str, turn_id: str) -> bool:
        """Cancel the caller's own turn; another owner's turn, or one elsewhere, is not found."""
        running = self._turns.get(turn_id)
        if running is None or running.owner != owner or running.conversation_id != conversation_id:
            return False
        if not running.finishing:
            running.task.cancel()
        return True

    async def drain(self, grace_seconds: float) -> None:
        """At shutdown (no new turns by now): let turns finish, then cancel what is left, while
        the database and NATS are still there to record and report it."""
        if self._turns:
            await asyncio.wait([running.task for running in self._turns.values()], timeout=grace_seconds)
        leftovers = list(self._turns.values())
        for running in leftovers:
            if not running.finishing:
                running.task.cancel()
        if leftovers:
            await asyncio.wait([running.task for running in leftovers], timeout=5)


@dataclass(frozen=True, slots=True)
class _Turn:
    """One running turn: who asked, where its events go, what it calls."""

    identity: Identity
    owner: store.Owner
    conversation_id: str
    turn_id: str
    request: TurnRequest
    provider: str
    model: str
    started: float
    stream: TurnStream

    def usage_event(self, usage: common_pb2.TokenUsage, *, success: bool) -> events_pb2.UsageRecorded:
        occurred_at = Timestamp()
        occurred_at.GetCurrentTime()
        return events_pb2.UsageRecorded(
            event_id=str(uuid.uuid4()),
            tenant_id=self.identity.tenant_id,
            user_id=self.identity.user_id,
            kind="chat",
            provider=self.provider,
            model=self.model,
            usage=usage,
            reservation_id=self.request.reservation_id,
            conversation_id=self.conversation_id,
            request_id=self.identity.request_id,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            success=success,
            occurred_at=occurred_at,
        )


def _error_code(error: Exception) -> str:
    code = getattr(error, "code", None)
    if callable(code):  # a gRPC error from a service this turn called
        return "upstream_unavailable"
    return "internal"


def _public_message(error: Exception) -> str:
    if callable(getattr(error, "code", None)):
        return "a service this answer needs did not respond; please try again"
    return "the answer could not be completed"
