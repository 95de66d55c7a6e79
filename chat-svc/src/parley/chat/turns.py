"""A chat turn: check it, build its prompt, hold its budget; then stream the answer, store it, meter it.

`start` does, before it returns, everything a turn can be refused for: the conversation is the
caller's, each collection of a new conversation exists for the caller, the message meets the
rules of kit.contracts, the provider and model are known, the prompt is built (history and
retrieved passages) and counted by the provider, and usage-svc holds the budget for that prompt
plus max_tokens of output. A refused hold (`BudgetExceeded`) leaves nothing stored and no stream.

Then the turn runs as a task of this process and publishes every event on
`turn_subject(conversation, turn)`. Both messages, their sources and usage, the turn's end and
the usage event (outbox) are committed in one transaction before `end` is published, so a client
that sees `end` finds the conversation stored.

How a turn fails (the usage event always settles the hold):
- before the first token — the provider refused (`provider_refused`) or stayed unavailable after
  its retries and fallbacks (`provider_unavailable`), or a service failed — no message is stored,
  the usage event has zero tokens, the turn is `failed` and the client gets an `error` event;
- after the first token, the provider broke off (`provider_interrupted`): the partial answer is
  stored marked `incomplete`, the usage event bills what the provider produced (success=false),
  the client gets `usage` then `error`, and the turn is `failed`;
- cancelled: no message is stored; the usage event bills the text already produced, counted by
  us (the provider charges for it), or nothing if none was;
- a failure of our own after the model began answering (the event bus went away mid-answer, …):
  no message is stored; the usage event charges the whole hold (`billed_at_hold`), since what the
  model produced past the failure is unknown;
- its replica died: another replica finds the turn's lease lapsed and settles it
  (leases.TurnLeases): `interrupted`, billed at its hold, its stream ended with an `error`.
A turn settled elsewhere (this replica was too slow to renew its lease) stores and bills nothing
more here: its last transaction only ends a turn that is still `running`.
"""

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from parley.chat import metrics, store, tool_loop
from parley.chat.clients import Budget, Collections, Hold, HoldUncertain, Retrieval
from parley.chat.config import Settings
from parley.chat.context_builder import Prompt, Turn, build_prompt, history_window
from parley.chat.global_context import EMPTY as EMPTY_GLOBAL
from parley.chat.global_context import GlobalContext, GlobalContexts
from parley.chat.intent import HYBRID, MINIMAL, POSITIONAL, SEMANTIC, Intent, IntentClassifier
from parley.chat.leases import TurnLeases, hold_key
from parley.chat.memory import Summarizer
from parley.chat.metering import Meter, usage_event
from parley.chat.provider_errors import ProviderRefused, ProviderUnavailable, StreamBroken
from parley.chat.provider_registry import choose
from parley.chat.providers import Finished, LlmProvider, TextDelta, prompt_tokens
from parley.chat.tool_loop import ToolSession, hold_bound, with_tools
from parley.chat.tools import Toolbox
from parley.chat.turn_stream import TurnStream, require_turn_stream
from parley.kit.contracts import (
    INTENTS,
    MAX_COLLECTIONS_PER_CONVERSATION,
    MAX_MESSAGE_CHARS,
    MAX_OUTPUT_TOKENS,
    MAX_QUERY_CHARS,
    cancel_subject,
    tier_budget,
    tier_global_budget,
    tier_name,
)
from parley.kit.db import Sessions
from parley.kit.errors import InvalidInput, NotFound, Unavailable
from parley.kit.identity import Identity
from parley.kit.outbox import OutboxRelay
from parley.kit.tokens import count_tokens
from parley.v1 import chat_pb2, common_pb2, events_pb2, retrieval_pb2

log = logging.getLogger(__name__)

SNIPPET_CHARS = 280
TITLE_CHARS = 60
# A Source carries every field of the ChunkHit it cites that has the same name; the rest it derives.
_SOURCE_FIELDS_FROM_HIT = tuple(
    descriptor.name
    for descriptor in chat_pb2.Source.DESCRIPTOR.fields
    if descriptor.name in retrieval_pb2.ChunkHit.DESCRIPTOR.fields_by_name
)


@dataclass(frozen=True, slots=True)
class TurnRequest:
    conversation_id: str
    collection_ids: tuple[str, ...]
    message: str
    tier: int
    max_tokens: int
    provider: str
    model: str
    intent: str  # the caller's hint of what the message asks for, or empty
    current_section_id: str = ""  # the chunk the user has open, or empty


@dataclass(frozen=True, slots=True)
class StartedTurn:
    conversation_id: str
    turn_id: str


def validate(request: TurnRequest) -> None:
    """The rules a message must meet; the gateway checks them too, this is the second lock."""
    message = request.message
    if not message.strip():
        raise InvalidInput("message must not be empty")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidInput(f"message is {len(message)} characters; the limit is {MAX_MESSAGE_CHARS}")
    if "\x00" in message:
        raise InvalidInput("message must not contain NUL characters")
    if not request.conversation_id and not request.collection_ids:
        raise InvalidInput("give collection_ids to start a conversation, or a conversation_id")
    if len(request.collection_ids) > MAX_COLLECTIONS_PER_CONVERSATION:
        raise InvalidInput(f"at most {MAX_COLLECTIONS_PER_CONVERSATION} collections per conversation")
    if not 0 <= request.max_tokens <= MAX_OUTPUT_TOKENS:
        raise InvalidInput(f"max_tokens must be between 1 and {MAX_OUTPUT_TOKENS}")
    if request.intent and request.intent not in INTENTS:
        raise InvalidInput(f"unknown intent {request.intent!r}; known: {', '.join(INTENTS)}")


def title_from(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def source_of(index: int, hit: retrieval_pb2.ChunkHit) -> chat_pb2.Source:
    shared: dict[str, Any] = {name: getattr(hit, name) for name in _SOURCE_FIELDS_FROM_HIT}
    return chat_pb2.Source(index=index, snippet=hit.text[:SNIPPET_CHARS], **shared)


@dataclass(frozen=True, slots=True)
class _Turn:
    """One started turn: who asked, where its events go, what it calls and the hold it may spend."""

    identity: Identity
    owner: store.Owner
    conversation_id: str
    turn_id: str
    message: str
    provider: LlmProvider
    model: str
    max_tokens: int
    prompt: Prompt
    summarized: int  # how many of the conversation's first messages its summary covered at the start
    context_used: chat_pb2.ContextUsed  # without the call's cache figures, known when it ends
    hold: Hold
    started: float
    stream: TurnStream
    tools: ToolSession | None = None  # when the model may call tools: what they run with and did

    def usage_event(
        self, usage: common_pb2.TokenUsage, *, provider: str, model: str, success: bool
    ) -> events_pb2.UsageRecorded:
        return usage_event(
            self.identity,
            kind="chat",
            usage=usage,
            provider=provider,
            model=model,
            reservation_id=self.hold.reservation_id,
            conversation_id=self.conversation_id,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            success=success,
        )

    def context_with_cache(self, usage: common_pb2.TokenUsage) -> chat_pb2.ContextUsed:
        used = chat_pb2.ContextUsed()
        used.CopyFrom(self.context_used)
        used.cache_read_tokens, used.cache_write_tokens = usage.cache_read_tokens, usage.cache_write_tokens
        used.cache_write_1h_tokens = usage.cache_write_1h_tokens
        if self.tools is not None:
            used.tool_calls.extend(self.tools.calls)
            used.tool_rounds = self.tools.model_rounds
        return used


def _numbers(message: store.MessageRecord) -> list[int]:
    """The passage numbers a message used: those sent with a question, those an answer cited
    (a tool's search included)."""
    return [number for _, number in message.sent_passages] + [source.index for source in message.sources]


@dataclass(frozen=True, slots=True)
class _Context:
    """What a turn's prompt is built from, and how it was gathered."""

    intent: Intent
    retrieval: str  # the strategy that ran
    hits: list[retrieval_pb2.ChunkHit]
    local: str
    notes: tuple[str, ...]


class TurnRunner:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: Sessions,
        nc: NatsClient,
        js: JetStreamContext,
        retrieval: Retrieval,
        collections: Collections,
        budget: Budget,
        providers: dict[str, LlmProvider],
        intents: IntentClassifier,
        memory: Summarizer,
        relay: OutboxRelay,
        global_contexts: GlobalContexts | None = None,
        toolbox: Toolbox | None = None,
    ) -> None:
        self._settings = settings
        self._global = global_contexts
        self._toolbox = toolbox
        self._sessions = sessions
        self._nc = nc
        self._js = js
        self._retrieval = retrieval
        self._collections = collections
        self._budget = budget
        self._providers = providers
        self._intents = intents
        self._memory = memory
        self._relay = relay
        self._meter = Meter(sessions=sessions, relay=relay)
        self._running = RunningTurns()
        self.leases = TurnLeases(
            settings=settings, sessions=sessions, js=js, relay=relay, budget=budget, running=self._running.ids
        )

    async def start(self, identity: Identity, request: TurnRequest) -> StartedTurn:
        validate(request)
        default = self._providers[self._settings.default_provider]
        provider, model = choose(
            self._providers, provider=request.provider, model=request.model, default=(default, default.default_model)
        )
        max_tokens = request.max_tokens or self._settings.default_max_tokens
        owner = store.Owner(identity.tenant_id, identity.user_id)
        conversation, history, total_messages = await self._conversation(owner, request)
        collection_ids = conversation.collection_ids if conversation else tuple(dict.fromkeys(request.collection_ids))
        # Independent of each other, so overlapped: the collections' existence (another tenant's
        # is NotFound), whether events can be published, and the context (the script's global
        # context, then retrieval; both only ever read the caller's tenant). Each still refuses the
        # turn before any hold or model call.
        checks = [] if conversation is not None else [self._collections.require(identity, c) for c in collection_ids]

        async def scripts_and_context() -> tuple[GlobalContext, _Context]:
            scripts = (
                await self._global.build(identity, collection_ids, budget=tier_global_budget(request.tier))
                if self._global is not None
                else EMPTY_GLOBAL
            )
            context = await self._gather(
                identity, request, collection_ids=collection_ids, has_global=bool(scripts.text)
            )
            return scripts, context

        (scripts, context), _ = await asyncio.gather(
            scripts_and_context(),
            asyncio.gather(require_turn_stream(self._js), *checks),
        )
        budget = tier_budget(request.tier)
        # The conversation as it was sent, from where the last turn's began (messages before the
        # window are counted in `before`), and past every passage number it has used.
        before = (total_messages - len(history)) if conversation else 0
        last_answer = next((m for m in reversed(history) if m.role == "assistant" and m.context_used), None)
        since = last_answer.context_used.conversation_from - before if last_answer and last_answer.context_used else 0
        prompt = build_prompt(
            question=request.message,
            hits=context.hits,
            local=context.local,
            history=[Turn(m.role, m.as_sent, holds=m.sent_passages, plain=m.content) for m in history],
            next_number=1 + max((n for m in history for n in _numbers(m)), default=0),
            conversation_from=since,
            summary=conversation.summary if conversation else "",
            budget=budget,
            global_context=scripts.text,
        )
        paused = (
            bool(history) and time.time() - history[-1].created_at.timestamp() > self._settings.cache_hour_after_seconds
        )
        prompt = dataclasses.replace(prompt, long_cache=paused)
        # The writers' room tools, over the conversation's scripts, when there are any.
        tools = None
        if self._toolbox is not None and scripts.scripts and self._settings.tool_rounds > 0:
            prompt = with_tools(prompt)
            tools = ToolSession(
                self._toolbox,
                identity,
                scripts.scripts,
                tuple(collection_ids),
                self._settings.tool_rounds,
                next_passage=prompt.next_number,
            )
        context_used = chat_pb2.ContextUsed(
            intent=context.intent.name,
            intent_source=context.intent.source,
            retrieval=context.retrieval,
            tier=tier_name(request.tier),
            budget_tokens=budget,
            parts=[chat_pb2.ContextPart(name=name, tokens=tokens) for name, tokens in prompt.part_tokens],
            trimmed=prompt.trimmed,
            notes=(*context.notes, *scripts.notes),
            carried_passages=len(prompt.found_again),
            conversation_from=before + prompt.conversation_from,
        )
        # The most this call can cost: every input token of the provider's bound at input's dearest rate
        # plus every allowed output token, for every round the tools may take (inside this one hold).
        input_bound, output_bound = provider.count_tokens(prompt, model=model), max_tokens
        if tools is not None:
            input_bound, output_bound = hold_bound(
                prompt_tokens=input_bound, max_tokens=max_tokens, rounds=self._settings.tool_rounds
            )
        turn_id = str(uuid.uuid4())
        created = conversation is None
        # The turn is written before its hold: a replica that dies between the two leaves a row the
        # lease sweep finds, and the sweep releases the hold by the turn's key (leases.hold_key).
        self._running.starting(turn_id)
        try:
            async with self._sessions.begin() as session:
                if conversation is None:
                    conversation = await store.create_conversation(
                        session=session, owner=owner, title=title_from(request.message), collection_ids=collection_ids
                    )
                await store.add_turn(
                    session=session,
                    owner=owner,
                    conversation_id=conversation.id,
                    turn_id=turn_id,
                    lease=self.leases.lease,
                    provider=provider.name,
                    model=model,
                )
            try:
                hold = await self._budget.reserve(
                    identity,
                    provider=provider.name,
                    model=model,
                    input_tokens=input_bound,
                    max_output_tokens=output_bound,
                    idempotency_key=hold_key(turn_id),
                )
            except HoldUncertain:
                # usage-svc may have placed the hold before it failed to answer (it died, or the deadline
                # passed): the row stays, and once its lease lapses the sweep releases the hold by the
                # turn's key and fails the turn.
                raise
            except BaseException:
                # Refused, or usage-svc never reached: no hold was placed, and nothing is kept.
                await self._discard(owner, turn_id=turn_id, conversation_id=conversation.id if created else None)
                raise
            try:
                async with self._sessions.begin() as session:
                    if not await store.set_turn_hold(
                        session=session, turn_id=turn_id, reservation_id=hold.reservation_id
                    ):
                        raise NotFound(f"conversation {conversation.id} was deleted while the turn started")
                turn = _Turn(
                    identity=identity,
                    owner=owner,
                    conversation_id=conversation.id,
                    turn_id=turn_id,
                    message=request.message,
                    provider=provider,
                    model=model,
                    max_tokens=max_tokens,
                    prompt=prompt,
                    summarized=conversation.summarized_messages,
                    context_used=context_used,
                    hold=hold,
                    started=time.monotonic(),
                    stream=TurnStream(
                        self._js,
                        conversation_id=conversation.id,
                        turn_id=turn_id,
                        frame_chars=self._settings.frame_chars,
                        frame_seconds=self._settings.frame_seconds,
                        publish_timeout=self._settings.publish_timeout_seconds,
                    ),
                    tools=tools,
                )
            except BaseException:
                await self._release(identity, hold)  # no task will ever send the usage event that would
                await self._discard(owner, turn_id=turn_id, conversation_id=conversation.id if created else None)
                raise
            task = asyncio.create_task(self._run(turn), name=f"turn:{turn_id}")
            self._running.add(turn_id, owner=owner, conversation_id=conversation.id, task=task)
        finally:
            self._running.started(turn_id)
        return StartedTurn(conversation.id, turn_id)

    async def _discard(self, owner: store.Owner, *, turn_id: str, conversation_id: str | None) -> None:
        """A turn refused (or failed) at its hold leaves nothing: its row, and its conversation if it
        was created for it. If this fails, the lease sweep ends the turn (failed, unbilled)."""
        try:
            async with self._sessions.begin() as session:
                await store.discard_turn(
                    session=session, tenant_id=owner.tenant_id, turn_id=turn_id, conversation_id=conversation_id
                )
        except Exception:
            log.exception("could not discard a turn refused at its hold", extra={"fields": {"turn_id": turn_id}})

    async def cancel(self, owner: store.Owner, *, conversation_id: str, turn_id: str) -> None:
        """Ask every replica; the one running the caller's turn cancels it and answers. A turn no
        replica runs is said to be what it is: ended (how), or interrupted — settled now if its
        replica's lease ran out."""
        turn = await self._turn(owner, conversation_id=conversation_id, turn_id=turn_id)
        if turn.state != "running":
            raise NotFound(f"turn {turn_id} is not running: it {_ENDED[turn.state]}")
        command = events_pb2.CancelTurnCommand(
            tenant_id=owner.tenant_id, user_id=owner.user_id, conversation_id=turn.conversation_id, turn_id=turn.id
        )
        try:
            # turn.id is the stored uuid: never a wildcard in the subject.
            await self._nc.request(
                cancel_subject(turn.id), command.SerializeToString(), timeout=self._settings.cancel_wait_seconds
            )
            return
        except (NoRespondersError, NatsTimeoutError):
            pass
        if await self.leases.settle_lapsed(turn_id=turn.id):
            raise NotFound(f"turn {turn_id} is not running: it {_ENDED['interrupted']}")
        now = await self._turn(owner, conversation_id=conversation_id, turn_id=turn_id)
        if now.state != "running":  # it ended while we asked
            raise NotFound(f"turn {turn_id} is not running: it {_ENDED[now.state]}")
        raise Unavailable(
            f"the server running turn {turn_id} does not answer; if it stopped, the turn is ended within "
            f"{self._settings.turn_lease_seconds + self._settings.turn_sweep_seconds:.0f}s"
        )

    async def _turn(self, owner: store.Owner, *, conversation_id: str, turn_id: str) -> store.TurnRecord:
        async with self._sessions() as session:
            turn = await store.get_turn(session=session, owner=owner, conversation_id=conversation_id, turn_id=turn_id)
        if turn is None:
            raise NotFound(f"turn {turn_id} not found")
        return turn

    def cancel_here(self, owner: store.Owner, *, conversation_id: str, turn_id: str) -> bool:
        """Cancel the caller's turn if this replica runs it."""
        return self._running.cancel(owner, conversation_id, turn_id)

    async def drain(self, grace_seconds: float) -> None:
        await self._running.drain(grace_seconds)

    async def _conversation(
        self, owner: store.Owner, request: TurnRequest
    ) -> tuple[store.ConversationRecord | None, list[store.MessageRecord], int]:
        """The caller's conversation this turn continues, its recent messages in the window the
        context builder keeps, and how many messages it has (none for a new one)."""
        if not request.conversation_id:
            return None, [], 0
        async with self._sessions() as session:
            conversation = await store.get_conversation(
                session=session, owner=owner, conversation_id=request.conversation_id
            )
            if conversation is None:
                raise NotFound(f"conversation {request.conversation_id} not found")
            recent = await store.conversation_messages(
                session=session,
                tenant_id=owner.tenant_id,
                conversation_id=conversation.id,
                last=self._settings.history_messages,
            )
            total = await store.count_messages(
                session=session, tenant_id=owner.tenant_id, conversation_id=conversation.id
            )
        window = list(history_window(recent, total=total, last=self._settings.history_messages))
        return conversation, window, total

    async def _gather(
        self,
        identity: Identity,
        request: TurnRequest,
        *,
        collection_ids: Sequence[str],
        has_global: bool = False,
    ) -> _Context:
        """The intent, then the passages it calls for and the open section's text."""
        section: retrieval_pb2.ChunkHit | None = None
        if request.current_section_id:
            found = await self._retrieval.chunks(identity, [request.current_section_id])
            if not found or found[0].collection_id not in collection_ids:
                raise NotFound(f"section {request.current_section_id} not found in this conversation's collections")
            section = found[0]

        async def bill(usage: common_pb2.TokenUsage, provider: str, model: str) -> None:
            await self._bill_intent(identity, request.conversation_id, usage, provider=provider, model=model)

        intent = await self._intents.decide(hint=request.intent, message=request.message, bill=bill)
        notes: list[str] = []
        strategy = intent.retrieval
        if strategy == MINIMAL and not has_global:
            notes.append("no outline exists yet: semantic retrieval instead of the outline")
            strategy = SEMANTIC
        if strategy in (POSITIONAL, HYBRID) and section is None:
            notes.append(f"{intent.name} without a current_section_id: semantic retrieval instead")
            strategy = SEMANTIC
        if strategy == MINIMAL:  # the global context (outline, sheets, scene index) is its context
            hits = []
        elif section is not None and strategy == POSITIONAL:
            around = await self._retrieval.neighbours(
                identity, document_id=section.document_id, ordinal=section.ordinal, before=1, after=1
            )
            hits = [chunk for chunk in around if chunk.chunk_id != section.chunk_id]
        elif section is not None and strategy == HYBRID:
            similar = await self._retrieval.search(
                identity,
                query=section.text[:MAX_QUERY_CHARS],
                collection_ids=collection_ids,
                k=self._settings.similar_k + 1,  # the section finds itself first
            )
            notes += _degraded(similar)
            hits = [hit for hit in similar.hits if hit.chunk_id != section.chunk_id][: self._settings.similar_k]
        else:
            searched = await self._retrieval.search(
                identity,
                # Retrieval takes queries up to its limit; a long message most often asks at its end.
                query=request.message[-MAX_QUERY_CHARS:],
                collection_ids=collection_ids,
                k=self._settings.semantic_k,
            )
            notes += _degraded(searched)
            hits = list(searched.hits)
        return _Context(
            intent=intent,
            retrieval=strategy,
            hits=hits,
            local=section.text if section is not None else "",
            notes=tuple(notes),
        )

    async def _bill_intent(
        self, identity: Identity, conversation_id: str, usage: common_pb2.TokenUsage, *, provider: str, model: str
    ) -> None:
        """The classification call, metered on its own (no hold: it is a few tokens of a cheap model)."""
        event = usage_event(
            identity,
            kind="intent",
            usage=usage,
            provider=provider,
            model=model,
            reservation_id="",
            conversation_id=conversation_id,
            latency_ms=0,
            success=True,
        )
        await self._meter.record(event)

    async def _keep_reported(self, turn: _Turn, usage: common_pb2.TokenUsage, *, provider: str, model: str) -> None:
        """Write down what the provider reported before pricing and storing the answer (a round trip
        to usage-svc, a transaction): if this replica dies meanwhile, the turn is billed this, not
        its whole hold. Best effort: the hold still bounds the bill."""
        try:
            async with self._sessions.begin() as session:
                await store.record_reported_usage(
                    session=session,
                    turn_id=turn.turn_id,
                    reported=store.ReportedUsage(provider=provider, model=model, usage=usage),
                )
        except Exception:
            log.exception("could not keep a turn's reported usage", extra={"fields": {"turn_id": turn.turn_id}})

    async def _price(self, turn: _Turn, usage: common_pb2.TokenUsage, *, provider: str, model: str) -> int | None:
        """What the answer cost, to show with it; None when usage-svc cannot say. Billing is not
        this: usage-svc prices the turn's usage event itself."""
        try:
            return await self._budget.price(turn.identity, provider=provider, model=model, usage=usage)
        except Exception:
            log.exception("could not price an answer", extra={"fields": {"turn_id": turn.turn_id}})
            return None

    async def _release(self, identity: Identity, hold: Hold) -> None:
        try:
            await self._budget.release(identity, hold.reservation_id)
        except Exception:  # the hold expires on its own
            log.exception("could not release a budget hold", extra={"fields": {"reservation": hold.reservation_id}})

    async def _run(self, turn: _Turn) -> None:
        answer: list[str] = []
        called = time.monotonic()
        first_token_seconds: float | None = None
        try:
            finished: Finished | None = None
            events = tool_loop.answer(
                turn.provider,
                turn.prompt,
                model=turn.model,
                max_tokens=turn.max_tokens,
                session=turn.tools,
                announce=lambda call, done: turn.stream.tool(call, done=done),
            )
            async for event in events:
                if isinstance(event, TextDelta):
                    if first_token_seconds is None and event.text:
                        first_token_seconds = time.monotonic() - called
                    answer.append(event.text)
                    await turn.stream.delta(event.text)
                else:
                    finished = event
            assert finished is not None, "a provider stream ends with Finished"
            # From here the answer is whole: storing it is no longer cancelled, and its failures
            # after the commit are not a failed turn (the stored conversation is the truth).
            self._running.finishing(turn.turn_id)
            await self._keep_reported(turn, finished.usage, provider=finished.provider, model=finished.model)
            _observe_first_token(first_token_seconds, provider=finished.provider, model=finished.model)
            await self._complete(turn, "".join(answer), finished)
        except asyncio.CancelledError:
            # The provider charges for what it produced before the connection closed.
            produced = "".join(answer)
            usage = common_pb2.TokenUsage()
            if produced:
                usage.input_tokens = prompt_tokens(turn.prompt)  # our estimate, not the hold's bound
                usage.output_tokens = count_tokens(produced)
            await self._fail(turn, state="cancelled", code="cancelled", message="the turn was cancelled", usage=usage)
            raise
        except StreamBroken as broken:
            log.warning("answer broken off", extra={"fields": {"turn_id": turn.turn_id, "error": str(broken)}})
            self._running.finishing(turn.turn_id)  # what was said is stored as it is
            await self._keep_reported(turn, broken.usage, provider=broken.provider, model=broken.model)
            _observe_first_token(first_token_seconds, provider=broken.provider, model=broken.model)
            await self._interrupted(turn, "".join(answer), broken)
        except (ProviderRefused, ProviderUnavailable) as error:
            log.warning("no provider answered", extra={"fields": {"turn_id": turn.turn_id, "error": str(error)}})
            refused = isinstance(error, ProviderRefused)
            await self._fail(
                turn,
                state="failed",
                code="provider_refused" if refused else "provider_unavailable",
                message=(
                    "the model refused this request; try another model or provider"
                    if refused
                    else "the model is unavailable right now; please try again later"
                ),
            )
        except SettledElsewhere:
            log.warning("turn settled by another replica meanwhile", extra={"fields": {"turn_id": turn.turn_id}})
        except Exception as error:  # a turn's failure is reported to its client, not raised
            log.exception("turn failed", extra={"fields": {"turn_id": turn.turn_id}})
            await self._fail(
                turn,
                state="failed",
                code=_error_code(error),
                message=_public_message(error),
                # The model was answering: what it produced past our failure is unknown, the hold bounds it.
                billed_at_hold=first_token_seconds is not None,
            )

    async def _complete(self, turn: _Turn, answer: str, finished: Finished) -> None:
        stored = await self._store_answer(
            turn, answer, usage=finished.usage, provider=finished.provider, model=finished.model, completed=True
        )
        metrics.turns.labels("completed").inc()
        try:
            await turn.stream.sources(stored.sources)
            await turn.stream.usage(
                finished.usage, model=finished.model, cost_micros=stored.cost, context_used=stored.context_used
            )
            await turn.stream.end(
                user_message_id=stored.question.id,
                assistant_message_id=stored.answer.id,
                finish_reason=finished.finish_reason,
                created_at=stored.answer.created_at,
            )
        except Exception:
            # The answer is stored and metered; a client that missed the end reads the conversation.
            log.exception("could not announce a stored turn", extra={"fields": {"turn_id": turn.turn_id}})

    async def _interrupted(self, turn: _Turn, answer: str, broken: StreamBroken) -> None:
        """Keep the partial answer, marked incomplete, and bill what the provider produced."""
        code = "provider_interrupted"
        try:
            stored = await self._store_answer(
                turn, answer, usage=broken.usage, provider=broken.provider, model=broken.model, completed=False
            )
            metrics.turns.labels(code).inc()
            await turn.stream.usage(
                broken.usage, model=broken.model, cost_micros=stored.cost, context_used=stored.context_used
            )
            await turn.stream.error(
                code=code, message="the model stopped mid-answer; the part received is kept, marked incomplete"
            )
        except Exception:  # nothing more to tell anyone; the hold expires on its own
            log.exception("could not report an interrupted turn", extra={"fields": {"turn_id": turn.turn_id}})

    async def _store_answer(
        self,
        turn: _Turn,
        answer: str,
        *,
        usage: common_pb2.TokenUsage,
        provider: str,
        model: str,
        completed: bool,
    ) -> "_StoredAnswer":
        """Both messages, the turn's end and its usage event in one transaction: a whole answer
        (`completed`, which may also ask for a summary) or the part received before the model
        stopped (kept incomplete, the turn failed, billed as unsuccessful)."""
        sources = [source_of(passage.index, passage.hit) for passage in turn.prompt.passages]
        sources += [source_of(index, hit) for index, hit in (turn.tools.passages if turn.tools else [])]
        context_used = turn.context_with_cache(usage)
        cost = await self._price(turn, usage, provider=provider, model=model)
        async with self._sessions.begin() as session:
            if not await store.end_turn(
                session=session,
                tenant_id=turn.owner.tenant_id,
                turn_id=turn.turn_id,
                state="completed" if completed else "failed",
            ):
                raise SettledElsewhere(turn.turn_id)  # rolls back: it was billed at its hold
            question, stored = await store.add_messages(
                session=session,
                owner=turn.owner,
                conversation_id=turn.conversation_id,
                turn_id=turn.turn_id,
                question=store.NewMessage(
                    role="user",
                    content=turn.message,
                    sent_text=turn.prompt.turn_text(),
                    sent_passages=[(passage.hit.chunk_id, passage.index) for passage in turn.prompt.sent],
                ),
                answer=store.NewMessage(
                    role="assistant",
                    content=answer,
                    sources=sources,
                    model=model,
                    usage=usage,
                    incomplete=not completed,
                    context_used=context_used,
                    cost_micros=cost,
                ),
            )
            if completed:
                total = await store.count_messages(
                    session=session, tenant_id=turn.owner.tenant_id, conversation_id=turn.conversation_id
                )
                job = self._memory.job(
                    turn.owner, turn.conversation_id, summarized=turn.summarized, total_messages=total
                )
                if job is not None:
                    await store.request_summary(session=session, job=job)
            await store.record_usage(
                session=session,
                usage_event=turn.usage_event(usage, provider=provider, model=model, success=completed),
            )
        self._relay.notify()
        metrics.observe_usage(usage, provider=provider, model=model)
        return _StoredAnswer(question, stored, sources, context_used, cost)

    async def _fail(
        self,
        turn: _Turn,
        *,
        state: str,
        code: str,
        message: str,
        usage: common_pb2.TokenUsage | None = None,
        billed_at_hold: bool = False,
    ) -> None:
        """Tell the client, and record the failed request so its budget hold is released (or, when
        `billed_at_hold`, charged whole)."""
        usage = usage or common_pb2.TokenUsage()
        metrics.turns.labels(code).inc()
        try:
            async with self._sessions.begin() as session:
                if not await store.end_turn(
                    session=session, tenant_id=turn.owner.tenant_id, turn_id=turn.turn_id, state=state
                ):
                    raise SettledElsewhere(turn.turn_id)
                event = turn.usage_event(usage, provider=turn.provider.name, model=turn.model, success=False)
                event.billed_at_hold = billed_at_hold
                await store.record_usage(session=session, usage_event=event)
            self._relay.notify()
            await turn.stream.error(code=code, message=message)
        except SettledElsewhere:
            log.warning("turn settled by another replica meanwhile", extra={"fields": {"turn_id": turn.turn_id}})
        except Exception:  # the lease lapses and another replica (or this one) settles it at its hold
            log.exception("could not report a failed turn", extra={"fields": {"turn_id": turn.turn_id}})


class SettledElsewhere(Exception):
    """The turn is no longer running: another replica settled it as interrupted (its lease lapsed)."""


# What a turn that is not running did, for the caller who tries to cancel it.
_ENDED = {
    "completed": "completed",
    "failed": "failed",
    "cancelled": "was cancelled",
    "interrupted": "was interrupted: the server running it stopped, and it was billed at its hold",
}


@dataclass(frozen=True, slots=True)
class _StoredAnswer:
    question: store.MessageRecord
    answer: store.MessageRecord
    sources: list[chat_pb2.Source]
    context_used: chat_pb2.ContextUsed
    cost: int | None


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
        self._starting: set[str] = set()  # written, their hold being placed: leased, not yet running

    def starting(self, turn_id: str) -> None:
        self._starting.add(turn_id)

    def started(self, turn_id: str) -> None:
        self._starting.discard(turn_id)

    def add(self, turn_id: str, *, owner: store.Owner, conversation_id: str, task: asyncio.Task[None]) -> None:
        self._turns[turn_id] = _Running(owner, conversation_id, task)
        task.add_done_callback(lambda _: self._turns.pop(turn_id, None))

    def finishing(self, turn_id: str) -> None:
        self._turns[turn_id].finishing = True

    def ids(self) -> list[str]:
        """The turns whose leases this process keeps: running, or starting."""
        return [*self._turns, *self._starting]

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


def _observe_first_token(seconds: float | None, *, provider: str, model: str) -> None:
    if seconds is not None:
        metrics.time_to_first_token.labels(provider, model).observe(seconds)


def _error_code(error: Exception) -> str:
    code = getattr(error, "code", None)
    if callable(code):  # a gRPC error from a service this turn called
        return "upstream_unavailable"
    return "internal"


def _public_message(error: Exception) -> str:
    if callable(getattr(error, "code", None)):
        return "a service this answer needs did not respond; please try again"
    return "the answer could not be completed"


def _degraded(found: retrieval_pb2.SearchResponse) -> list[str]:
    """The context report's note for a search that ran without some of its legs."""
    if "vector" in found.degraded:
        return ["the embeddings provider is unreachable: passages found by keyword alone"]
    return [f"search ran without its {leg} leg" for leg in found.degraded]
