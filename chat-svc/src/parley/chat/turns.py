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

A turn's context is gathered by `turn_context`, it runs in `turn_run`, and `turn_end` stores,
bills or fails it (how a turn fails is told there); `running_turns` tracks this process's turns.
A turn settled elsewhere (this replica was too slow to renew its lease) stores and bills nothing
more here: its last transaction only ends a turn that is still `running`.
"""

import asyncio
import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from parley.chat import store
from parley.chat.clients import Budget, Collections, HoldUncertain, Retrieval
from parley.chat.config import Settings
from parley.chat.context_builder import build_prompt
from parley.chat.global_context import EMPTY as EMPTY_GLOBAL
from parley.chat.global_context import GlobalContext, GlobalContexts
from parley.chat.intent import IntentClassifier
from parley.chat.leases import TurnLeases, hold_key
from parley.chat.memory import Summarizer
from parley.chat.metering import Meter
from parley.chat.providers import LlmProvider, choose, hold_size
from parley.chat.running_turns import RunningTurns
from parley.chat.tool_loop import ToolSession, hold_bound, with_tools
from parley.chat.tools import Toolbox
from parley.chat.turn_context import ContextGatherer, TurnContext, TurnRequest, validate
from parley.chat.turn_end import ActiveTurn, TurnEnd
from parley.chat.turn_run import run_turn
from parley.chat.turn_stream import TurnStream, require_turn_stream
from parley.kit.contracts import cancel_subject, tier_budget, tier_global_budget, tier_name
from parley.kit.db import Sessions
from parley.kit.errors import NotFound, Unavailable
from parley.kit.identity import Identity
from parley.kit.outbox import OutboxRelay
from parley.v1 import chat_pb2, events_pb2

log = logging.getLogger(__name__)

TITLE_CHARS = 60


@dataclass(frozen=True, slots=True)
class StartedTurn:
    conversation_id: str
    turn_id: str


def title_from(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


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
        self._collections = collections
        self._budget = budget
        self._providers = providers
        self._context = ContextGatherer(
            settings=settings,
            sessions=sessions,
            retrieval=retrieval,
            intents=intents,
            meter=Meter(sessions=sessions, relay=relay),
        )
        self._end = TurnEnd(sessions=sessions, budget=budget, memory=memory, relay=relay)
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
        conversation, history = await self._context.conversation(owner, request)  # as it was sent
        collection_ids = conversation.collection_ids if conversation else tuple(dict.fromkeys(request.collection_ids))
        # Independent of each other, so overlapped: the collections' existence (another tenant's
        # is NotFound), whether events can be published, and the context (the script's global
        # context, then retrieval; both only ever read the caller's tenant). Each still refuses the
        # turn before any hold or model call.
        checks = [] if conversation is not None else [self._collections.require(identity, c) for c in collection_ids]

        async def scripts_and_context() -> tuple[GlobalContext, TurnContext]:
            scripts = (
                await self._global.build(identity, collection_ids, budget=tier_global_budget(request.tier))
                if self._global is not None
                else EMPTY_GLOBAL
            )
            context = await self._context.gather(
                identity, request, collection_ids=collection_ids, has_global=bool(scripts.text)
            )
            return scripts, context

        (scripts, context), _ = await asyncio.gather(
            scripts_and_context(),
            asyncio.gather(require_turn_stream(self._js), *checks),
        )
        budget = tier_budget(request.tier)
        prompt = build_prompt(
            question=request.message,
            hits=context.hits,
            local=context.local,
            history=history.turns,
            next_number=history.next_number,
            conversation_from=history.since,
            summary=conversation.summary if conversation else "",
            budget=budget,
            global_context=scripts.text,
            temperature=request.temperature,
        )
        # A conversation that paused past a short cache's life writes this turn's for an hour.
        if history.last_at is not None:
            paused = time.time() - history.last_at.timestamp() > self._settings.cache_hour_after_seconds
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
            conversation_from=history.before + prompt.conversation_from,
        )
        # The most this call can cost: every input token of the provider's bound at input's dearest rate
        # plus every allowed output token, for every round the tools may take (inside this one hold),
        # each round's call billed at most `billed_calls` times (the attempts the provider billed
        # before one answered), at the dearest route it may take (its fallbacks).
        input_bound, output_bound = provider.count_tokens(prompt, model=model), max_tokens
        if tools is not None:
            input_bound, output_bound = hold_bound(
                prompt_tokens=input_bound, max_tokens=max_tokens, rounds=self._settings.tool_rounds
            )
        size = hold_size(provider, model, input_tokens=input_bound, max_output_tokens=output_bound)
        turn_id = str(uuid.uuid4())
        created = conversation is None
        # The turn is written before its hold: a replica that dies between the two leaves a row the
        # lease sweep finds, and the sweep releases the hold by the turn's key (leases.hold_key).
        self._running.starting(turn_id)
        try:
            async with self._sessions.begin() as session:
                await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
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
                    input_tokens=size.input_tokens,
                    max_output_tokens=size.max_output_tokens,
                    idempotency_key=hold_key(turn_id),
                    fallbacks=size.fallbacks,
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
                    await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
                    if not await store.set_turn_hold(
                        session=session, turn_id=turn_id, reservation_id=hold.reservation_id
                    ):
                        raise NotFound(f"conversation {conversation.id} was deleted while the turn started")
                turn = ActiveTurn(
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
                await self._end.release(identity, hold)  # no task will ever send the usage event that would
                await self._discard(owner, turn_id=turn_id, conversation_id=conversation.id if created else None)
                raise
            task = asyncio.create_task(run_turn(turn, end=self._end, running=self._running), name=f"turn:{turn_id}")
            self._running.add(turn_id, owner=owner, conversation_id=conversation.id, task=task)
        finally:
            self._running.started(turn_id)
        return StartedTurn(conversation.id, turn_id)

    async def _discard(self, owner: store.Owner, *, turn_id: str, conversation_id: str | None) -> None:
        """A turn refused (or failed) at its hold leaves nothing: its row, and its conversation if it
        was created for it. If this fails, the lease sweep ends the turn (failed, unbilled)."""
        try:
            async with self._sessions.begin() as session:
                await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
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
            await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
            turn = await store.get_turn(session=session, owner=owner, conversation_id=conversation_id, turn_id=turn_id)
        if turn is None:
            raise NotFound(f"turn {turn_id} not found")
        return turn

    def cancel_here(self, owner: store.Owner, *, conversation_id: str, turn_id: str) -> bool:
        """Cancel the caller's turn if this replica runs it."""
        return self._running.cancel(owner, conversation_id, turn_id)

    async def drain(self, grace_seconds: float) -> None:
        await self._running.drain(grace_seconds)


# What a turn that is not running did, for the caller who tries to cancel it.
_ENDED = {
    "completed": "completed",
    "failed": "failed",
    "cancelled": "was cancelled",
    "interrupted": "was interrupted: the server running it stopped, and it was billed at its hold",
}
