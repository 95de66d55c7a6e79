"""Ending a turn: storing its answer and billing it, or failing it.

Both messages, their sources and usage, the turn's end and the usage event (outbox) are
committed in one transaction before `end` is published, so a client that sees `end` finds the
conversation stored.

How a turn fails (the usage event always settles the hold):
- before the first token — the provider refused (`provider_refused`) or stayed unavailable after
  its retries and fallbacks (`provider_unavailable`), or a service failed — no message is stored,
  the usage event has zero tokens, the turn is `failed` and the client gets an `error` event;
- after the first token, the provider broke off (`provider_interrupted`): the partial answer is
  stored marked `incomplete`, the usage event bills what the provider produced (success=false),
  the client gets `usage` then `error`, and the turn is `failed`;
- cancelled: no message is stored; the usage event bills what the provider reported (its input)
  and a bound of the text it produced since (its bytes), or nothing if it did neither
  (providers.cut_off_usage);
- an attempt the provider billed and then failed before its answer (`FailedAttempt`, retried or
  not) is billed as it happens, its own usage event (`bill_attempt`), whatever the turn's end;
- a failure of our own after the model began answering (the event bus went away mid-answer, …):
  no message is stored; the usage event charges the whole hold (`billed_at_hold`), since what the
  model produced past the failure is unknown;
- its replica died: another replica finds the turn's lease lapsed and settles it
  (leases.TurnLeases): `interrupted`, billed at its hold, its stream ended with an `error`.
A turn settled elsewhere (this replica was too slow to renew its lease) stores and bills nothing
more here: its last transaction only ends a turn that is still `running`.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

from parley.chat import metrics, store
from parley.chat.clients import Budget, Hold
from parley.chat.context_builder import Prompt
from parley.chat.memory import Summarizer
from parley.chat.metering import Meter, attempt_event, usage_event
from parley.chat.providers import FailedAttempt, Finished, LlmProvider, StreamBroken
from parley.chat.tool_loop import ToolSession
from parley.chat.turn_stream import TurnStream
from parley.kit.contracts import USAGE_CHAT
from parley.kit.db import Sessions
from parley.kit.identity import Identity
from parley.kit.outbox import OutboxRelay
from parley.v1 import chat_pb2, common_pb2, events_pb2, retrieval_pb2

log = logging.getLogger(__name__)

SNIPPET_CHARS = 280
# A Source carries every field of the ChunkHit it cites that has the same name; the rest it derives.
_SOURCE_FIELDS_FROM_HIT = tuple(
    descriptor.name
    for descriptor in chat_pb2.Source.DESCRIPTOR.fields
    if descriptor.name in retrieval_pb2.ChunkHit.DESCRIPTOR.fields_by_name
)


def source_of(index: int, hit: retrieval_pb2.ChunkHit) -> chat_pb2.Source:
    shared: dict[str, Any] = {name: getattr(hit, name) for name in _SOURCE_FIELDS_FROM_HIT}
    return chat_pb2.Source(index=index, snippet=hit.text[:SNIPPET_CHARS], **shared)


@dataclass(frozen=True, slots=True)
class ActiveTurn:
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
            kind=USAGE_CHAT,
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


class SettledElsewhere(Exception):
    """The turn is no longer running: another replica settled it as interrupted (its lease lapsed)."""


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    question: store.MessageRecord
    answer: store.MessageRecord
    sources: list[chat_pb2.Source]
    context_used: chat_pb2.ContextUsed
    cost: int | None


class TurnEnd:
    """How a started turn ends: stored and billed, kept incomplete, or failed."""

    def __init__(self, *, sessions: Sessions, budget: Budget, memory: Summarizer, relay: OutboxRelay) -> None:
        self._sessions = sessions
        self._budget = budget
        self._memory = memory
        self._relay = relay
        self._meter = Meter(sessions=sessions, relay=relay)

    async def keep_reported(self, turn: ActiveTurn, usage: common_pb2.TokenUsage, *, provider: str, model: str) -> None:
        """Write down what the provider reported before pricing and storing the answer (a round trip
        to usage-svc, a transaction): if this replica dies meanwhile, the turn is billed this, not
        its whole hold. Best effort: the hold still bounds the bill."""
        try:
            async with self._sessions.begin() as session:
                await store.enter_tenant(session=session, tenant_id=turn.owner.tenant_id)
                await store.record_reported_usage(
                    session=session,
                    turn_id=turn.turn_id,
                    reported=store.ReportedUsage(provider=provider, model=model, usage=usage),
                )
        except Exception:
            log.exception("could not keep a turn's reported usage", extra={"fields": {"turn_id": turn.turn_id}})

    async def bill_attempt(self, turn: ActiveTurn, attempt: FailedAttempt) -> None:
        """Bill an attempt the provider billed before it failed, on its own and at once: its event id
        is the turn's and the attempt's (metering.attempt_event_id), so a replay records it once.
        It names no hold (its event would release the hold the turn still runs under), and the
        turn's hold covers it (providers.billed_calls)."""
        event = attempt_event(
            turn.identity, attempt, kind=USAGE_CHAT, call_id=turn.turn_id, conversation_id=turn.conversation_id
        )
        await self._meter.record(event)

    async def _price(self, turn: ActiveTurn, usage: common_pb2.TokenUsage, *, provider: str, model: str) -> int | None:
        """What the answer cost, to show with it; None when usage-svc cannot say. Billing is not
        this: usage-svc prices the turn's usage event itself."""
        try:
            return await self._budget.price(turn.identity, provider=provider, model=model, usage=usage)
        except Exception:
            log.exception("could not price an answer", extra={"fields": {"turn_id": turn.turn_id}})
            return None

    async def release(self, identity: Identity, hold: Hold) -> None:
        try:
            await self._budget.release(identity, hold.reservation_id)
        except Exception:  # the hold expires on its own
            log.exception("could not release a budget hold", extra={"fields": {"reservation": hold.reservation_id}})

    async def complete(self, turn: ActiveTurn, answer: str, finished: Finished) -> None:
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

    async def interrupted(self, turn: ActiveTurn, answer: str, broken: StreamBroken) -> None:
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
        turn: ActiveTurn,
        answer: str,
        *,
        usage: common_pb2.TokenUsage,
        provider: str,
        model: str,
        completed: bool,
    ) -> StoredAnswer:
        """Both messages, the turn's end and its usage event in one transaction: a whole answer
        (`completed`, which may also ask for a summary) or the part received before the model
        stopped (kept incomplete, the turn failed, billed as unsuccessful)."""
        sources = [source_of(passage.index, passage.hit) for passage in turn.prompt.passages]
        sources += [source_of(index, hit) for index, hit in (turn.tools.passages if turn.tools else [])]
        context_used = turn.context_with_cache(usage)
        cost = await self._price(turn, usage, provider=provider, model=model)
        async with self._sessions.begin() as session:
            await store.enter_tenant(session=session, tenant_id=turn.owner.tenant_id)
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
                    # What the model read for it, which later turns send again byte for byte.
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
        return StoredAnswer(question, stored, sources, context_used, cost)

    async def fail(
        self,
        turn: ActiveTurn,
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
                await store.enter_tenant(session=session, tenant_id=turn.owner.tenant_id)
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


def error_code(error: Exception) -> str:
    code = getattr(error, "code", None)
    if callable(code):  # a gRPC error from a service this turn called
        return "upstream_unavailable"
    return "internal"


def public_message(error: Exception) -> str:
    if callable(getattr(error, "code", None)):
        return "a service this answer needs did not respond; please try again"
    return "the answer could not be completed"
