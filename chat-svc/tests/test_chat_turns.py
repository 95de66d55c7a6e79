"""TurnRunner owns the whole turn: it checks the request, builds the prompt, holds the budget for
it, then streams, stores and meters the answer. On real PostgreSQL and NATS, with fakes of
retrieval, ingestion and usage-svc (the Protocols of parley.chat.clients), and for remote
providers the official SDKs against HTTP fakes of the Anthropic and OpenAI APIs (tests.fakes)."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import grpc
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.chat import events, grpc_api, store
from parley.chat.clients import Budget, Hold, UsageClient
from parley.chat.completions import Completions
from parley.chat.config import Settings
from parley.chat.context_builder import Prompt
from parley.chat.conversations import Conversations
from parley.chat.intent import IntentClassifier
from parley.chat.leases import hold_key
from parley.chat.memory import Summarizer, summary_due
from parley.chat.metering import Meter, attempt_event_id
from parley.chat.models import outbox, turns
from parley.chat.providers import (
    EXTRACTIVE,
    AnthropicProvider,
    Finished,
    LlmProvider,
    LocalProvider,
    OpenAIProvider,
    ProviderEvent,
    ProviderUnavailable,
    ReliableProvider,
    RetryPolicy,
    Route,
    TextDelta,
    summary_model,
    text_token_bound,
)
from parley.chat.store import Owner
from parley.chat.turn_context import TurnRequest
from parley.chat.turn_stream import TURN_STREAM_NAME
from parley.chat.turns import StartedTurn, TurnRunner
from parley.kit import db
from parley.kit.contracts import SUMMARIZE_JOBS, USAGE_RECORDED, turn_subject
from parley.kit.errors import BudgetExceeded, InvalidInput, NotFound, Unavailable
from parley.kit.identity import Identity
from parley.kit.outbox import OutboxRelay
from parley.kit.rpc import GrpcServer
from parley.kit.testing import TEST_SIGNER, signed
from parley.kit.tokens import count_tokens
from parley.usage.budget import Budgets
from parley.usage.recording import Recorder
from parley.v1 import chat_pb2, chat_pb2_grpc, common_pb2, events_pb2, retrieval_pb2
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.scripting import DEFAULT_ANSWER, Script

MANUAL = "Descale the boiler every 200 shots. Use citric acid, never vinegar."


class FakeRetrieval:
    """A manual of a few sections (chunks 0…n in order); every search finds the first."""

    def __init__(self, collection_id: str, sections: Sequence[str] = (MANUAL,)) -> None:
        self.collection_id = collection_id
        self.chunks_by_id = {
            f"{collection_id}-{ordinal}": retrieval_pb2.ChunkHit(
                chunk_id=f"{collection_id}-{ordinal}",
                document_id="doc-1",
                collection_id=collection_id,
                document_title="Espresso manual",
                heading="Care",
                ordinal=ordinal,
                text=text,
                score=0.9,
            )
            for ordinal, text in enumerate(sections)
        }
        self.searches: list[tuple[str, int]] = []  # query, k
        self.degraded: list[str] = []  # what retrieval says it searched without
        self.neighbour_calls: list[tuple[str, int]] = []  # document, ordinal

    async def search(
        self, identity: Identity, *, query: str, collection_ids: Sequence[str], k: int
    ) -> retrieval_pb2.SearchResponse:
        self.searches.append((query, k))
        return retrieval_pb2.SearchResponse(hits=list(self.chunks_by_id.values())[:1], degraded=self.degraded)

    async def chunks(self, identity: Identity, chunk_ids: Sequence[str]) -> list[retrieval_pb2.ChunkHit]:
        return [self.chunks_by_id[chunk_id] for chunk_id in chunk_ids if chunk_id in self.chunks_by_id]

    async def neighbours(
        self, identity: Identity, *, document_id: str, ordinal: int, before: int, after: int
    ) -> list[retrieval_pb2.ChunkHit]:
        self.neighbour_calls.append((document_id, ordinal))
        return [chunk for chunk in self.chunks_by_id.values() if ordinal - before <= chunk.ordinal <= ordinal + after]


class FakeCollections:
    """Each tenant sees only its own collections."""

    def __init__(self, owned: dict[str, set[str]]) -> None:
        self.owned = owned

    async def require(self, identity: Identity, collection_id: str) -> None:
        if collection_id not in self.owned.get(identity.tenant_id, set()):
            raise NotFound(f"collection {collection_id} not found")


@dataclass
class FakeBudget:
    refuse: bool = False
    holds: list[tuple[str, int, int]] = field(default_factory=list)  # model, input, max output
    providers: list[str] = field(default_factory=list)  # priced on the provider's row
    granted: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    while_holding: Callable[[], Awaitable[None]] | None = None  # what happens meanwhile elsewhere
    price_micros: int | None = 4_321  # what an answer costs; None: usage-svc cannot say
    priced: list[tuple[str, str, common_pb2.TokenUsage]] = field(default_factory=list)  # provider, model, usage

    async def reserve(
        self,
        identity: Identity,
        *,
        provider: str,
        model: str,
        input_tokens: int,
        max_output_tokens: int,
        idempotency_key: str = "",
        fallbacks: Sequence[tuple[str, str]] = (),
    ) -> Hold:
        if self.refuse:
            raise BudgetExceeded("the monthly budget is spent")
        self.holds.append((model, input_tokens, max_output_tokens))
        self.providers.append(provider)
        self.granted.append(str(uuid.uuid4()))
        if self.while_holding is not None:
            await self.while_holding()
        return Hold(reservation_id=self.granted[-1], reserved_micros=0)

    async def release(self, identity: Identity, reservation_id: str) -> None:
        self.released.append(reservation_id)

    async def price(self, identity: Identity, *, provider: str, model: str, usage: common_pb2.TokenUsage) -> int:
        if self.price_micros is None:
            raise Unavailable("usage is unavailable; try again")
        self.priced.append((provider, model, usage))
        return self.price_micros


class BrokenProvider(LocalProvider):
    """Says a little, then fails like a provider whose connection dropped."""

    async def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]:
        yield TextDelta("Descale ")
        raise ConnectionError("provider went away")


class EndlessProvider(LocalProvider):
    """Says a little, then waits for ever: a turn to cancel."""

    async def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]:
        yield TextDelta("Descale ")
        await asyncio.Event().wait()
        yield Finished(common_pb2.TokenUsage(), "stop", provider=self.name, model=model)


@dataclass
class Harness:
    runner: TurnRunner
    conversations: Conversations
    budget: FakeBudget
    identity: Identity
    owner: Owner
    collection_id: str
    sessions: db.Sessions
    retrieval: FakeRetrieval
    memory: Summarizer

    def ask(self, message: str = "How often should I descale the boiler?", **overrides: object) -> TurnRequest:
        fields: dict[str, object] = {
            "conversation_id": "",
            "collection_ids": (self.collection_id,),
            "message": message,
            "tier": chat_pb2.TIER_STANDARD,
            "max_tokens": 0,
            "provider": "",
            "model": "",
            "intent": "",
        }
        fields.update(overrides)
        return TurnRequest(**fields)  # type: ignore[arg-type]

    async def usage_events(self, conversation_id: str) -> list[events_pb2.UsageRecorded]:
        """The conversation's usage events in chat-svc's outbox, in the order they were written."""
        async with self.sessions() as session:
            query = select(outbox.c.payload).where(outbox.c.subject == USAGE_RECORDED).order_by(outbox.c.id)
            payloads = (await session.execute(query)).scalars()
            recorded = [events_pb2.UsageRecorded.FromString(payload) for payload in payloads]
        return [event for event in recorded if event.conversation_id == conversation_id]

    async def stored_turns(self) -> int:
        async with self.sessions() as session:
            query = select(func.count()).select_from(turns).where(turns.c.tenant_id == self.owner.tenant_id)
            return int((await session.execute(query)).scalar_one())


async def harness(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    *,
    provider: LlmProvider | None = None,
    budget: FakeBudget | None = None,
    remote: dict[str, LlmProvider] | None = None,
    usage: Budget | None = None,  # a real usage-svc's client instead of the fake budget
    sections: Sequence[str] = (MANUAL,),
    summary_model: LlmProvider | None = None,
    extractive_summaries: bool = False,
) -> Harness:
    tenant, collection_id = str(uuid.uuid4()), str(uuid.uuid4())
    retrieval = FakeRetrieval(collection_id, sections)
    js = nats_client.jetstream()
    budget = budget or FakeBudget()
    relay = OutboxRelay(sessions=sessions, table=outbox, js=js)  # not run: events stay in the outbox
    memory = Summarizer(
        sessions=sessions,
        relay=relay,
        model=None if summary_model is None else (summary_model, "local"),
        window=settings.history_messages,
        extractive=extractive_summaries,
    )
    runner = TurnRunner(
        settings=settings,
        sessions=sessions,
        nc=nats_client,
        js=js,
        retrieval=retrieval,
        collections=FakeCollections({tenant: {collection_id}}),
        budget=usage or budget,
        providers={"local": provider or LocalProvider(), **(remote or {})},
        intents=IntentClassifier(model=None),
        memory=memory,
        relay=relay,
    )
    identity = Identity(tenant_id=tenant, user_id="alice", request_id="req-1")
    return Harness(
        runner,
        Conversations(sessions=sessions, js=js),
        budget,
        identity,
        Owner(tenant, "alice"),
        collection_id,
        sessions,
        retrieval,
        memory,
    )


async def read_turn(nats_client: NatsClient, started: StartedTurn) -> list[events_pb2.TurnEvent]:
    subject = turn_subject(started.conversation_id, started.turn_id)
    subscription = await nats_client.jetstream().subscribe(
        subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    read: list[events_pb2.TurnEvent] = []
    try:
        while not read or read[-1].WhichOneof("kind") not in ("end", "error"):
            read.append(events_pb2.TurnEvent.FromString((await subscription.next_msg(timeout=5)).data))
    finally:
        await subscription.unsubscribe()
    return read


async def test_a_turn_streams_stores_and_meters_its_answer(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client)
    started = await h.runner.start(h.identity, h.ask(intent="question"))
    read = await read_turn(nats_client, started)

    kinds = [event.WhichOneof("kind") for event in read]
    assert kinds[-3:] == ["sources", "usage", "end"] and set(kinds[:-3]) == {"delta"}
    assert [event.seq for event in read] == list(range(1, len(read) + 1))
    answer = "".join(event.delta.text for event in read if event.HasField("delta"))
    assert "200 shots. [1]" in answer

    conversation, messages = await h.conversations.get(h.owner, started.conversation_id)
    assert conversation.collection_ids == (h.collection_id,)
    question, stored = messages
    assert (question.role, stored.role, stored.content) == ("user", "assistant", answer)
    assert stored.id == read[-1].end.assistant_message_id
    assert read[-1].end.created_at.ToDatetime(tzinfo=stored.created_at.tzinfo) == stored.created_at
    # The source went retrieval hit → event → stored JSONB → record without losing a field.
    assert list(stored.sources) == list(read[-3].sources.sources)
    source = stored.sources[0]
    assert (source.index, source.collection_id, source.heading, source.snippet) == (1, h.collection_id, "Care", MANUAL)
    assert stored.usage == read[-2].usage.usage and stored.usage.output_tokens > 0
    # The answer shows what usage-svc priced its usage at, stored and in the usage event.
    assert h.budget.priced == [("local", "local", stored.usage)]
    assert stored.cost_micros == read[-2].usage.cost_micros == grpc_api.message_proto(stored).cost_micros == 4_321

    # The hold covered the prompt as the provider counts it, plus the default max_tokens.
    [(model, input_tokens, max_output)] = h.budget.holds
    assert (model, input_tokens, max_output) == ("local", stored.usage.input_tokens, settings.default_max_tokens)
    assert h.budget.providers == ["local"]
    [recorded] = await h.usage_events(started.conversation_id)
    assert recorded.success and recorded.usage == stored.usage and recorded.reservation_id
    assert (recorded.provider, recorded.model, recorded.kind) == ("local", "local", "chat")
    assert h.budget.released == []  # the usage event settles the hold, not a release

    view = await h.conversations.turn(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)
    assert view.turn.state == "completed" and view.events_kept


async def test_an_answer_usage_svc_cannot_price_is_stored_and_billed_without_a_cost(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client, budget=FakeBudget(price_micros=None))
    started = await h.runner.start(h.identity, h.ask())
    read = await read_turn(nats_client, started)

    assert [event.WhichOneof("kind") for event in read][-2:] == ["usage", "end"]
    assert not read[-2].usage.HasField("cost_micros"), "unknown, not free"
    _, (_, stored) = await h.conversations.get(h.owner, started.conversation_id)
    assert stored.cost_micros is None and not grpc_api.message_proto(stored).HasField("cost_micros")
    [recorded] = await h.usage_events(started.conversation_id)
    assert recorded.success and recorded.usage == stored.usage, "billing does not wait for the price"


async def test_a_second_turn_continues_with_the_conversations_collections(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client)
    first = await h.runner.start(h.identity, h.ask())
    await read_turn(nats_client, first)
    second = await h.runner.start(
        h.identity, h.ask("And with what?", conversation_id=first.conversation_id, collection_ids=())
    )
    await read_turn(nats_client, second)
    _, messages = await h.conversations.get(h.owner, first.conversation_id)
    assert [message.turn_id for message in messages] == [first.turn_id] * 2 + [second.turn_id] * 2
    # The second prompt carried the first exchange: more input tokens were held for it.
    assert h.budget.holds[1][1] > h.budget.holds[0][1]


async def test_a_turn_that_fails_after_the_model_began_stores_nothing_and_is_billed_at_its_hold(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client, provider=BrokenProvider())
    started = await h.runner.start(h.identity, h.ask())
    read = await read_turn(nats_client, started)

    assert [event.WhichOneof("kind") for event in read] == ["delta", "error"]
    assert read[-1].error.code == "internal" and "provider" not in read[-1].error.message  # no internals
    _, messages = await h.conversations.get(h.owner, started.conversation_id)
    assert messages == []
    [recorded] = await h.usage_events(started.conversation_id)
    assert not recorded.success and recorded.usage == common_pb2.TokenUsage() and recorded.reservation_id
    # What the model produced after our failure is unknown: the hold, the most it can cost, is charged.
    assert recorded.billed_at_hold
    view = await h.conversations.turn(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)
    assert view.turn.state == "failed"


async def test_a_cancelled_turn_ends_with_cancelled_and_stores_no_message(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client, provider=EndlessProvider())
    await events.serve_cancels(nats_client, h.runner)
    started = await h.runner.start(h.identity, h.ask())
    # The cancel arrives at another replica, which asks the one that runs the turn.
    elsewhere = (await harness(settings, sessions, nats_client)).runner

    stranger = Owner(str(uuid.uuid4()), "mallory")
    with pytest.raises(NotFound):
        await elsewhere.cancel(stranger, conversation_id=started.conversation_id, turn_id=started.turn_id)
    with pytest.raises(NotFound):
        await elsewhere.cancel(h.owner, conversation_id=started.conversation_id, turn_id="*")
    await elsewhere.cancel(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)
    read = await read_turn(nats_client, started)

    assert [event.WhichOneof("kind") for event in read] == ["delta", "error"]
    assert read[-1].error.code == "cancelled"
    _, messages = await h.conversations.get(h.owner, started.conversation_id)
    assert messages == []
    [recorded] = await h.usage_events(started.conversation_id)
    # The provider charges for what it said before the cancel: billed at a bound of it (its bytes),
    # and, having reported nothing, the input at the provider's bound of the prompt (the hold's).
    assert not recorded.success and recorded.usage.output_tokens == text_token_bound("Descale ")
    assert recorded.usage.input_tokens == h.budget.holds[0][1]
    view = await h.conversations.turn(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)
    assert view.turn.state == "cancelled"
    with pytest.raises(NotFound, match="not running"):  # once over, there is nothing to cancel
        await elsewhere.cancel(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)


async def test_a_refused_hold_fails_the_start_and_leaves_nothing(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client, budget=FakeBudget(refuse=True))
    with pytest.raises(BudgetExceeded) as refused:
        await h.runner.start(h.identity, h.ask())
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED  # the gateway's 402
    assert (await h.conversations.page(h.owner, size=10, token="")).conversations == []
    assert await h.stored_turns() == 0  # no turn, so no task and no stream


async def test_a_turn_that_cannot_be_stored_after_its_hold_releases_the_hold(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client)
    first = await h.runner.start(h.identity, h.ask())
    await read_turn(nats_client, first)

    async def delete_the_conversation() -> None:  # the owner deletes it while the turn starts
        await h.conversations.delete(h.owner, first.conversation_id)

    h.budget.while_holding = delete_the_conversation
    with pytest.raises(NotFound, match="was deleted while the turn started"):
        await h.runner.start(h.identity, h.ask("And?", conversation_id=first.conversation_id, collection_ids=()))
    assert h.budget.released == [h.budget.granted[-1]]


async def test_another_tenants_collection_is_not_found_and_nothing_is_held(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client)
    with pytest.raises(NotFound, match="collection"):
        await h.runner.start(h.identity, h.ask(collection_ids=(h.collection_id, str(uuid.uuid4()))))
    with pytest.raises(NotFound, match="conversation"):
        await h.runner.start(h.identity, h.ask(conversation_id=str(uuid.uuid4()), collection_ids=()))
    assert h.budget.holds == []
    assert await h.stored_turns() == 0


async def test_the_message_rules_and_the_intent_are_checked(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client)
    for request in (
        h.ask(" "),
        h.ask("x" * 8_001),
        h.ask(collection_ids=()),
        h.ask(max_tokens=9_000),
        h.ask(intent="Not An Intent"),
        h.ask(provider="nope"),
    ):
        with pytest.raises(InvalidInput):
            await h.runner.start(h.identity, request)
    assert h.budget.holds == []


SCENES = (
    "INT. KITCHEN - DAY. Rosa burns the toast.",
    "INT. BARN - NIGHT. Rosa counts the eggs twice.",
    "EXT. FIELD - DAWN. Rosa runs from the storm.",
    "INT. TRUCK - DAY. Rosa drives to town.",
)


async def test_an_answer_carries_how_its_prompt_was_built(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client)
    started = await h.runner.start(h.identity, h.ask(tier=chat_pb2.TIER_QUICK))
    read = await read_turn(nats_client, started)

    used = read[-2].usage.context_used
    assert (used.intent, used.intent_source, used.retrieval, used.tier, used.budget_tokens) == (
        "question",
        "default",
        "semantic",
        "quick",
        1_200,
    )
    assert h.retrieval.searches[-1][1] == settings.semantic_k
    parts = {part.name: part.tokens for part in used.parts}
    assert list(parts) == ["system", "global", "conversation", "passages", "local", "message"]
    assert parts["passages"] > 0 and parts["local"] == parts["conversation"] == 0
    assert parts["message"] == count_tokens("How often should I descale the boiler?")
    _, messages = await h.conversations.get(h.owner, started.conversation_id)
    assert messages[1].context_used == used and messages[0].context_used is None
    assert grpc_api.message_proto(messages[1]).context_used == used


async def test_a_local_edit_reads_the_open_section_and_its_neighbours(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client, sections=SCENES)
    section = f"{h.collection_id}-2"
    started = await h.runner.start(
        h.identity, h.ask("Rewrite this so the storm feels closer", current_section_id=section)
    )
    read = await read_turn(nats_client, started)

    used = read[-2].usage.context_used
    assert (used.intent, used.intent_source, used.retrieval) == ("local_edit", "keywords", "positional")
    assert h.retrieval.neighbour_calls == [("doc-1", 2)] and h.retrieval.searches == []
    assert [source.snippet for source in read[-3].sources.sources] == [SCENES[1], SCENES[3]]
    assert {part.name: part.tokens for part in used.parts}["local"] > count_tokens(SCENES[2])


async def test_section_feedback_reads_passages_like_the_open_section(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client, sections=SCENES)
    section = f"{h.collection_id}-1"
    started = await h.runner.start(
        h.identity, h.ask("Thoughts?", intent="section_feedback", current_section_id=section)
    )
    used = (await read_turn(nats_client, started))[-2].usage.context_used
    assert (used.intent, used.intent_source, used.retrieval) == ("section_feedback", "hint", "hybrid")
    assert h.retrieval.searches == [(SCENES[1], settings.similar_k + 1)]  # the section finds itself too


@pytest.mark.parametrize(
    ("message", "note"),
    [
        ("Rewrite the storm scene", "local_edit without a current_section_id: semantic retrieval instead"),
        ("What is Rosa's arc overall?", "no outline exists yet: semantic retrieval instead of the outline"),
    ],
)
async def test_a_missing_outline_or_section_falls_back_to_semantic_and_says_so(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient, message: str, note: str
) -> None:
    h = await harness(settings, sessions, nats_client, sections=SCENES)
    used = (await read_turn(nats_client, await h.runner.start(h.identity, h.ask(message)))).pop(-2).usage.context_used
    assert (used.retrieval, list(used.notes)) == ("semantic", [note])


async def test_a_turn_whose_search_lost_its_vector_leg_says_so_in_its_context_report(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client)
    h.retrieval.degraded = ["vector"]  # retrieval answered from the keyword leg alone

    read = await read_turn(nats_client, await h.runner.start(h.identity, h.ask()))

    used = read[-2].usage.context_used
    assert list(used.notes) == ["the embeddings provider is unreachable: passages found by keyword alone"]
    assert read[-1].WhichOneof("kind") == "end"  # and answered all the same


async def test_a_section_outside_the_conversations_collections_is_not_found(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client, sections=SCENES)
    with pytest.raises(NotFound):
        await h.runner.start(h.identity, h.ask(current_section_id="someone-elses-chunk"))
    assert h.budget.holds == [] and await h.stored_turns() == 0


async def test_the_next_turn_cites_what_the_conversation_sent_and_sends_only_what_is_new(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client, sections=SCENES)
    first = await h.runner.start(h.identity, h.ask("Rewrite this", current_section_id=f"{h.collection_id}-1"))
    await read_turn(nats_client, first)
    second = await h.runner.start(h.identity, h.ask("Who is Rosa?", conversation_id=first.conversation_id))
    sources = (await read_turn(nats_client, second))[-3].sources.sources
    # The search finds scene 0, which the first question sent as [1]: cited by that number.
    assert [(source.index, source.snippet) for source in sources] == [(1, SCENES[0])]
    _, messages = await h.conversations.get(h.owner, first.conversation_id)
    asked_first, asked_second = messages[0], messages[2]
    # Each question is kept as the model read it: the first with its passages and the open
    # scene; the second without scene 0's text again, naming it.
    assert SCENES[0] in asked_first.sent_text and SCENES[2] in asked_first.sent_text
    assert asked_first.sent_text.endswith("Rewrite this") and asked_first.content == "Rewrite this"
    assert [number for _, number in asked_first.sent_passages] == [1, 2]
    assert SCENES[0] not in asked_second.sent_text and "[1]." in asked_second.sent_text
    assert asked_second.sent_passages == ()
    assert messages[3].context_used is not None and messages[3].context_used.carried_passages == 1

    # Open scene 2: it is the local part; its neighbours are new passages, numbered on.
    asked = h.ask("Tighten this", conversation_id=first.conversation_id, current_section_id=f"{h.collection_id}-2")
    third = await h.runner.start(h.identity, asked)
    sources = (await read_turn(nats_client, third))[-3].sources.sources
    assert SCENES[2] not in [source.snippet for source in sources]
    assert [(source.index, source.snippet) for source in sources] == [(3, SCENES[1]), (4, SCENES[3])]


async def test_an_unknown_turn_is_not_found_and_an_expired_one_says_so(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client)
    started = await h.runner.start(h.identity, h.ask())
    await read_turn(nats_client, started)
    for conversation_id, turn_id in (
        (started.conversation_id, str(uuid.uuid4())),
        (str(uuid.uuid4()), started.turn_id),
        (started.conversation_id, "*"),
    ):
        with pytest.raises(NotFound):
            await h.conversations.turn(h.owner, conversation_id=conversation_id, turn_id=turn_id)
    with pytest.raises(NotFound):  # another owner's turn
        await h.conversations.turn(
            Owner(h.owner.tenant_id, "bob"), conversation_id=started.conversation_id, turn_id=started.turn_id
        )

    # What the stream's max age does after an hour: the turn is stored, its events are gone.
    subject = turn_subject(started.conversation_id, started.turn_id)
    await nats_client.jetstream().purge_stream(TURN_STREAM_NAME, subject=subject)
    view = await h.conversations.turn(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)
    assert view.turn.state == "completed" and not view.events_kept


# Remote providers: the official SDKs against the HTTP fakes, behind ReliableProvider.

SONNET = "claude-sonnet-4-6"
FAST = RetryPolicy(first_token_timeout=2.0, backoff_base=0.001, backoff_max=0.01)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_retry_storm_ends_in_the_fallback_which_answers_and_is_billed(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    claude: AnthropicProvider,
    anthropic_fake: FakeAnthropic,
    gpt: OpenAIProvider,
    openai_fake: FakeOpenAI,
) -> None:
    anthropic_fake.script(*[Script.reject(529)] * (FAST.retries + 1))
    reliable = ReliableProvider(claude, fallbacks=[Route(gpt, "gpt-x")], policy=FAST)
    h = await harness(settings, sessions, nats_client, remote={"anthropic": reliable})
    before = {
        "retries": sample("parley_chat_provider_retries_total", provider="anthropic", model=SONNET),
        "errors": sample("parley_chat_provider_errors_total", provider="anthropic", code="unavailable"),
        "fallbacks": sample("parley_chat_provider_fallbacks_total", provider="openai", model="gpt-x"),
        "completed": sample("parley_chat_turns_total", outcome="completed"),
        "output": sample("gen_ai_client_token_usage_sum", token_type="output", provider="openai", model="gpt-x"),
        "first_tokens": sample("gen_ai_server_time_to_first_token_seconds_count", provider="openai", model="gpt-x"),
    }

    started = await h.runner.start(h.identity, h.ask(provider="anthropic"))
    read = await read_turn(nats_client, started)

    assert "".join(event.delta.text for event in read if event.HasField("delta")) == DEFAULT_ANSWER
    assert len(anthropic_fake.received) == FAST.retries + 1 and len(openai_fake.received) == 1
    # The hold was priced on what was asked; the bill names who answered.
    assert h.budget.holds[0][0] == SONNET and h.budget.providers == ["anthropic"]
    _, (_, stored) = await h.conversations.get(h.owner, started.conversation_id)
    [recorded] = await h.usage_events(started.conversation_id)
    assert (recorded.provider, recorded.model) == ("openai", "gpt-x")
    assert stored.model == read[-2].usage.model == "gpt-x"
    assert recorded.success and recorded.usage == stored.usage == read[-2].usage.usage
    assert stored.usage.output_tokens == count_tokens(DEFAULT_ANSWER) and not stored.incomplete

    after = {
        "retries": sample("parley_chat_provider_retries_total", provider="anthropic", model=SONNET),
        "errors": sample("parley_chat_provider_errors_total", provider="anthropic", code="unavailable"),
        "fallbacks": sample("parley_chat_provider_fallbacks_total", provider="openai", model="gpt-x"),
        "completed": sample("parley_chat_turns_total", outcome="completed"),
        "output": sample("gen_ai_client_token_usage_sum", token_type="output", provider="openai", model="gpt-x"),
        "first_tokens": sample("gen_ai_server_time_to_first_token_seconds_count", provider="openai", model="gpt-x"),
    }
    assert {name: after[name] - before[name] for name in before} == {
        "retries": FAST.retries,
        "errors": FAST.retries + 1,
        "fallbacks": 1,
        "completed": 1,
        "output": count_tokens(DEFAULT_ANSWER),
        "first_tokens": 1,
    }


@pytest.mark.parametrize("failure", ["error_event", "disconnect"])
async def test_an_answer_broken_off_mid_stream_is_kept_incomplete_and_billed(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    claude: AnthropicProvider,
    anthropic_fake: FakeAnthropic,
    failure: Literal["error_event", "disconnect"],
) -> None:
    anthropic_fake.script(Script.break_after(4, failure=failure))
    reliable = ReliableProvider(claude, fallbacks=[Route(claude, "claude-haiku-4-5")], policy=FAST)
    h = await harness(settings, sessions, nats_client, remote={"anthropic": reliable})
    interrupted = sample("parley_chat_turns_total", outcome="provider_interrupted")

    started = await h.runner.start(h.identity, h.ask(provider="anthropic"))
    read = await read_turn(nats_client, started)

    kinds = [event.WhichOneof("kind") for event in read]
    assert kinds[-2:] == ["usage", "error"] and set(kinds[:-2]) == {"delta"}
    assert read[-1].error.code == "provider_interrupted"
    partial = "".join(event.delta.text for event in read if event.HasField("delta"))
    assert partial == "The boiler is des"
    assert len(anthropic_fake.received) == 1, "a broken answer is never retried or sent elsewhere"

    _, (question, stored) = await h.conversations.get(h.owner, started.conversation_id)
    assert (question.role, stored.content, stored.incomplete, stored.model) == ("user", partial, True, SONNET)
    assert grpc_api.message_proto(stored).incomplete, "the API shows it too"
    [recorded] = await h.usage_events(started.conversation_id)
    assert not recorded.success and recorded.usage == stored.usage == read[-2].usage.usage
    assert recorded.usage.output_tokens == 4 and (recorded.provider, recorded.model) == ("anthropic", SONNET)
    assert recorded.usage.input_tokens + recorded.usage.cache_write_tokens > 0
    assert h.budget.priced == [("anthropic", SONNET, stored.usage)]
    assert stored.cost_micros == read[-2].usage.cost_micros == 4_321, "what was said is priced too"
    view = await h.conversations.turn(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)
    assert view.turn.state == "failed"
    assert sample("parley_chat_turns_total", outcome="provider_interrupted") == interrupted + 1


async def test_no_answer_before_the_first_token_fails_the_turn_with_the_reason(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    claude: AnthropicProvider,
    anthropic_fake: FakeAnthropic,
) -> None:
    wrong_key = AnthropicProvider(api_key="wrong", base_url=anthropic_fake.base_url, default_model=SONNET)
    remote: dict[str, LlmProvider] = {
        "anthropic": ReliableProvider(claude, policy=FAST),
        "refusing": ReliableProvider(wrong_key, policy=FAST),
    }
    h = await harness(settings, sessions, nats_client, remote=remote)
    anthropic_fake.script(*[Script.reject(529)] * (FAST.retries + 1))
    for provider, code in (("anthropic", "provider_unavailable"), ("refusing", "provider_refused")):
        started = await h.runner.start(h.identity, h.ask(provider=provider))
        read = await read_turn(nats_client, started)

        assert [event.WhichOneof("kind") for event in read] == ["error"]
        assert read[0].error.code == code and "529" not in read[0].error.message
        _, messages = await h.conversations.get(h.owner, started.conversation_id)
        assert messages == []
        [recorded] = await h.usage_events(started.conversation_id)
        assert not recorded.success and recorded.usage == common_pb2.TokenUsage()  # releases the hold
        view = await h.conversations.turn(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)
        assert view.turn.state == "failed"
    await wrong_key.close()


async def test_a_turn_cancelled_while_the_model_streams_stops_it_and_bills_what_it_said(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    claude: AnthropicProvider,
    anthropic_fake: FakeAnthropic,
) -> None:
    anthropic_fake.script(Script(pace=0.2))  # the whole answer would take about five seconds
    h = await harness(settings, sessions, nats_client, remote={"anthropic": ReliableProvider(claude, policy=FAST)})
    await events.serve_cancels(nats_client, h.runner)
    started = await h.runner.start(h.identity, h.ask(provider="anthropic"))

    subject = turn_subject(started.conversation_id, started.turn_id)
    subscription = await nats_client.jetstream().subscribe(
        subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    first = events_pb2.TurnEvent.FromString((await subscription.next_msg(timeout=5)).data)
    await subscription.unsubscribe()
    assert first.HasField("delta")
    cancelled_at = asyncio.get_running_loop().time()
    await h.runner.cancel(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)
    read = await read_turn(nats_client, started)

    assert read[-1].error.code == "cancelled"
    assert asyncio.get_running_loop().time() - cancelled_at < 1.0
    said = "".join(event.delta.text for event in read if event.HasField("delta"))
    assert 0 < len(said) < len(DEFAULT_ANSWER)
    _, messages = await h.conversations.get(h.owner, started.conversation_id)
    assert messages == []
    [recorded] = await h.usage_events(started.conversation_id)
    assert not recorded.success and recorded.usage.output_tokens >= text_token_bound(said)
    # Never less than Claude served: the input it reported in message_start, and a bound of the output.
    [served] = anthropic_fake.served
    usage = recorded.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        served.usage.input_tokens,
        served.usage.cache_read_input_tokens,
        served.usage.cache_creation_input_tokens,
    )
    assert usage.output_tokens >= served.output_tokens


@pytest.mark.parametrize("failure", ["error_event", "disconnect"])
async def test_a_stream_broken_before_its_first_token_is_retried_and_both_attempts_are_billed(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    claude: AnthropicProvider,
    anthropic_fake: FakeAnthropic,
    failure: Literal["error_event", "disconnect"],
) -> None:
    """Claude reported (and bills) the first attempt's input in message_start, then the stream broke:
    the attempt is billed on its own, keyed by the turn and the attempt, and the turn's hold covers
    both calls."""
    anthropic_fake.reset()
    anthropic_fake.script(Script.break_after(0, failure=failure))
    reliable = ReliableProvider(claude, policy=FAST)
    h = await harness(settings, sessions, nats_client, remote={"anthropic": reliable})

    started = await h.runner.start(h.identity, h.ask(provider="anthropic"))
    read = await read_turn(nats_client, started)

    assert read[-1].HasField("end")
    broken, answered = anthropic_fake.served
    attempt, turn = await h.usage_events(started.conversation_id)
    assert attempt.event_id == attempt_event_id(started.turn_id, 1) and not attempt.success
    assert attempt.reservation_id == "", "the hold stays for the attempt that answers"
    assert (attempt.provider, attempt.model, attempt.kind) == ("anthropic", SONNET, "chat")
    assert attempt.usage == common_pb2.TokenUsage(
        input_tokens=broken.usage.input_tokens,
        output_tokens=broken.output_tokens,
        cache_read_tokens=broken.usage.cache_read_input_tokens,
        cache_write_tokens=broken.usage.cache_creation_input_tokens,
    )
    assert turn.success and turn.reservation_id == h.budget.granted[0]
    assert turn.usage.output_tokens == answered.output_tokens
    [(_, held_input, held_output)] = h.budget.holds
    assert held_output == 2 * settings.default_max_tokens, "the hold covers billed_calls = 2 calls"
    assert held_input >= 2 * (answered.usage.input_tokens + answered.usage.cache_creation_input_tokens)


async def test_a_model_not_configured_is_refused_with_the_known_ones(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient, claude: AnthropicProvider
) -> None:
    h = await harness(settings, sessions, nats_client, remote={"anthropic": ReliableProvider(claude, policy=FAST)})
    with pytest.raises(InvalidInput, match=f"unknown model 'gpt-x' for anthropic; known: {SONNET}"):
        await h.runner.start(h.identity, h.ask(provider="anthropic", model="gpt-x"))
    with pytest.raises(InvalidInput, match="known: local, anthropic"):
        await h.runner.start(h.identity, h.ask(provider="nope"))
    assert h.budget.holds == []


async def test_a_budget_spent_at_the_models_real_prices_refuses_the_next_turn(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    anthropic_fake: FakeAnthropic,
    usage_svc: tuple[str, Budgets, Recorder],
    usage_client: UsageClient,
) -> None:
    _, budgets, recorder = usage_svc
    client = usage_client
    anthropic_fake.reset()
    haiku = "claude-haiku-4-5"  # $1 in, $5 out per million tokens in usage-svc's price table
    claude = AnthropicProvider(api_key=anthropic_fake.api_key, base_url=anthropic_fake.base_url, default_model=haiku)
    h = await harness(
        settings, sessions, nats_client, remote={"anthropic": ReliableProvider(claude, policy=FAST)}, usage=client
    )
    # Enough to hold one short answer (the prompt's token bound × $2, Haiku's 1-hour cache-write rate,
    # + 40 tokens × $5: about 1,500 micro-USD, twice: the hold covers a paid retry), not to spend one
    # and hold another.
    await budgets.set_limit(tenant_id=h.identity.tenant_id, monthly_limit_micros=3_300)
    ask = h.ask(provider="anthropic", max_tokens=40)

    started = await h.runner.start(h.identity, ask)
    await read_turn(nats_client, started)
    [recorded] = await h.usage_events(started.conversation_id)
    assert await recorder.record(recorded)  # what the relay and usage-svc's consumer do
    usage = recorded.usage
    cost = -(-(usage.input_tokens * 1_000_000 + usage.output_tokens * 5_000_000) // 1_000_000)
    quota = await budgets.quota(tenant_id=h.identity.tenant_id)
    assert usage.output_tokens == count_tokens(DEFAULT_ANSWER) and usage.cache_write_tokens == 0
    assert (quota.spent_micros, quota.reserved_micros) == (cost, 0)
    _, (_, stored) = await h.conversations.get(h.owner, started.conversation_id)
    assert stored.cost_micros == cost, "the answer shows what usage-svc billed"

    with pytest.raises(BudgetExceeded) as refused:
        await h.runner.start(h.identity, ask)
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED  # the gateway's 402
    assert len(anthropic_fake.received) == 1, "a refused turn never calls the model"
    await claude.close()


@pytest_asyncio.fixture
async def chat_api(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> AsyncIterator[tuple[chat_pb2_grpc.ChatServiceStub, Harness]]:
    """chat-svc's gRPC API over a harness's runner and conversations."""
    h = await harness(settings, sessions, nats_client)
    server = GrpcServer(port=0, host="127.0.0.1", signer=TEST_SIGNER)
    relay = OutboxRelay(sessions=sessions, table=outbox, js=nats_client.jetstream())
    completions = Completions(
        providers={"local": LocalProvider()},
        default=(LocalProvider(), "local"),
        default_max_tokens=settings.default_max_tokens,
        budget=h.budget,
        meter=Meter(sessions=sessions, relay=relay),
    )
    api = grpc_api.ChatApi(turns=h.runner, conversations=h.conversations, completions=completions)
    server.add(chat_pb2_grpc.add_ChatServiceServicer_to_server, api, "parley.v1.ChatService")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield chat_pb2_grpc.ChatServiceStub(channel), h
    finally:
        await channel.close()
        await server.stop(0)


async def test_a_conversation_exports_as_json_and_markdown(
    chat_api: tuple[chat_pb2_grpc.ChatServiceStub, Harness], nats_client: NatsClient
) -> None:
    stub, h = chat_api
    started = await h.runner.start(h.identity, h.ask())
    await read_turn(nats_client, started)
    metadata = signed(h.identity)

    def export(format: str) -> Awaitable[chat_pb2.ExportConversationResponse]:
        request = chat_pb2.ExportConversationRequest(conversation_id=started.conversation_id, format=format)
        return stub.ExportConversation(request, metadata=metadata, timeout=5)

    as_json = await export("json")
    assert as_json.content_type == "application/json"
    document = json.loads(as_json.content)
    question, answer = document["messages"]
    assert document["id"] == started.conversation_id and question["content"] == "How often should I descale the boiler?"
    assert answer["model"] == "local" and answer["sources"][0]["document_title"] == "Espresso manual"
    assert answer["context_used"]["intent"] == "question" and int(answer["usage"]["output_tokens"]) > 0

    as_markdown = await export("markdown")
    assert as_markdown.content_type.startswith("text/markdown")
    text = as_markdown.content.decode()
    assert text.startswith("# How often should I descale the boiler?\n")
    assert "## You — " in text and "## Answer (local) — " in text and "1. Espresso manual › Care" in text
    assert answer["content"] in text and "*Context: question (default), semantic retrieval, standard tier" in text

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await export("pdf")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.ExportConversation(
            chat_pb2.ExportConversationRequest(conversation_id=started.conversation_id, format="json"),
            metadata=signed(Identity(tenant_id="someone-else", user_id="alice", request_id="r")),
            timeout=5,
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_conversations_are_listed_newest_first_a_page_at_a_time(
    chat_api: tuple[chat_pb2_grpc.ChatServiceStub, Harness], nats_client: NatsClient
) -> None:
    stub, h = chat_api
    for message in ("First question?", "Second question?", "Third question?"):
        await read_turn(nats_client, await h.runner.start(h.identity, h.ask(message)))
    titles: list[str] = []
    token = ""
    while True:
        page = await stub.ListConversations(
            chat_pb2.ListConversationsRequest(page=common_pb2.PageRequest(page_size=2, page_token=token)),
            metadata=signed(h.identity),
            timeout=5,
        )
        titles += [conversation.title for conversation in page.conversations]
        assert all(not conversation.messages for conversation in page.conversations)
        if not (token := page.next_page_token):
            break
    assert titles == ["Third question?", "Second question?", "First question?"]


async def test_a_long_conversation_is_read_a_page_of_messages_at_a_time_newest_last(
    chat_api: tuple[chat_pb2_grpc.ChatServiceStub, Harness], nats_client: NatsClient
) -> None:
    stub, h = chat_api
    conversation_id = ""
    for n in range(1, 7):  # 12 messages
        started = await h.runner.start(h.identity, h.ask(f"Question {n}?", conversation_id=conversation_id))
        conversation_id = started.conversation_id
        await read_turn(nats_client, started)

    async def page(size: int, token: str = "") -> chat_pb2.Conversation:
        return await stub.GetConversation(
            chat_pb2.GetConversationRequest(
                conversation_id=conversation_id, page=common_pb2.PageRequest(page_size=size, page_token=token)
            ),
            metadata=signed(h.identity),
            timeout=5,
        )

    pages: list[list[tuple[str, str]]] = []
    token = ""
    while True:
        read = await page(5, token)
        pages.append([(message.role, message.content) for message in read.messages])
        if not (token := read.next_page_token):
            break
    # The most recent first, each page oldest to newest; a turn's question before its answer.
    assert [len(messages) for messages in pages] == [5, 5, 2]
    assert pages[0][-2:][0] == ("user", "Question 6?") and pages[0][-1][0] == "assistant"
    assert pages[0][0] == ("assistant", pages[0][0][1]) and pages[1][-1] == ("user", "Question 4?")
    assert pages[2][0] == ("user", "Question 1?")
    whole = [message for messages in reversed(pages) for message in messages]
    assert [content for role, content in whole if role == "user"] == [f"Question {n}?" for n in range(1, 7)]
    assert [role for role, _ in whole] == ["user", "assistant"] * 6
    # No page size: the default page (20) holds all twelve, with no token.
    everything = await page(0)
    assert len(everything.messages) == 12 and everything.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await page(5, "not-a-token")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


class SummaryModel(LocalProvider):
    """Summarises every conversation the same way, and remembers what it was given."""

    def __init__(self, *, broken_once: bool = False) -> None:
        self.asked: list[str] = []
        self.broken_once = broken_once  # the first call fails after its provider reported (billed) 120 tokens

    async def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]:
        if self.broken_once:
            self.broken_once = False
            raise ProviderUnavailable("overloaded", provider=self.name, usage=common_pb2.TokenUsage(input_tokens=120))
        self.asked.append(prompt.question)
        yield TextDelta("The user asked about descaling, eight times.")
        yield Finished(common_pb2.TokenUsage(input_tokens=300, output_tokens=9), "stop", provider="local", model=model)


class PromptRecorder(LocalProvider):
    def __init__(self) -> None:
        self.prompts: list[Prompt] = []

    async def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]:
        self.prompts.append(prompt)
        async for event in super().stream(prompt, model=model, max_tokens=max_tokens):
            yield event


async def test_a_long_conversation_is_summarised_in_the_background_and_the_summary_replaces_old_messages(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    # Its first attempt fails after the provider billed it, and is retried: both are billed.
    summariser, answers = SummaryModel(broken_once=True), PromptRecorder()
    summarising = ReliableProvider(summariser, policy=FAST)
    h = await harness(settings, sessions, nats_client, provider=answers, summary_model=summarising)
    conversation_id = ""
    for n in range(8):  # 16 messages: past 15, and the window has moved past the first 6
        started = await h.runner.start(
            h.identity, h.ask(f"Question {n} about descaling?", conversation_id=conversation_id)
        )
        conversation_id = started.conversation_id
        await read_turn(nats_client, started)

    async with h.sessions() as session:
        payloads = (await session.execute(select(outbox.c.payload).where(outbox.c.subject == SUMMARIZE_JOBS))).scalars()
        jobs = [chat_pb2.SummarizeJob.FromString(payload) for payload in payloads]
    [job] = [job for job in jobs if job.conversation_id == conversation_id]
    assert (job.tenant_id, job.user_id, job.through_messages) == (h.owner.tenant_id, "alice", 6)

    await h.memory.summarize(job)
    await h.memory.summarize(job)  # redelivered: nothing more to do, and not billed twice
    assert len(summariser.asked) == 1
    assert "User: Question 0 about descaling?" in summariser.asked[0]
    assert "Question 3" not in summariser.asked[0]  # message 7 and on stay in the window
    billed = [event for event in await h.usage_events(conversation_id) if event.kind == "summary"]
    assert [(event.usage.input_tokens, event.reservation_id, event.success) for event in billed] == [
        (120, "", False),
        (300, "", True),
    ]

    await read_turn(nats_client, await h.runner.start(h.identity, h.ask("And now?", conversation_id=conversation_id)))
    prompt = answers.prompts[-1]
    assert prompt.summary.endswith("The user asked about descaling, eight times.")
    assert "Question 0 about descaling?" not in [turn.content for turn in prompt.history]


async def test_offline_a_long_conversation_keeps_the_first_sentence_of_each_older_message(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    answers = PromptRecorder()
    h = await harness(settings, sessions, nats_client, provider=answers, extractive_summaries=True)
    conversation_id = ""
    for n in range(8):
        started = await h.runner.start(
            h.identity,
            h.ask(f"Question {n} about descaling? Say it in detail, please.", conversation_id=conversation_id),
        )
        conversation_id = started.conversation_id
        await read_turn(nats_client, started)
    async with h.sessions() as session:
        payloads = (await session.execute(select(outbox.c.payload).where(outbox.c.subject == SUMMARIZE_JOBS))).scalars()
        jobs = [chat_pb2.SummarizeJob.FromString(payload) for payload in payloads]
    [job] = [job for job in jobs if job.conversation_id == conversation_id]

    await h.memory.summarize(job)

    await read_turn(nats_client, await h.runner.start(h.identity, h.ask("And now?", conversation_id=conversation_id)))
    summary = answers.prompts[-1].summary
    asked = [line for line in summary.splitlines() if line.startswith("User asked: ")]
    # The six folded messages: three questions, each its first sentence only, and their answers.
    assert asked == [f"User asked: Question {n} about descaling?" for n in range(3)]
    assert sum(line.startswith("Assistant answered: ") for line in summary.splitlines()) == 3
    assert "Question 3" not in summary  # still in the window, whole
    # No model was called for it, so nothing was billed.
    assert not [event for event in await h.usage_events(conversation_id) if event.kind == "summary"]


def test_summaries_are_on_by_default_with_the_providers_cheaper_model_or_offline_without_one() -> None:
    local = LocalProvider()
    claude = AnthropicProvider(
        api_key="sk-ant-test", default_model="claude-sonnet-4-6", models=["claude-haiku-4-5"], base_url=None
    )
    served: dict[str, LlmProvider] = {"local": local, "anthropic": claude}
    assert summary_model("auto", served, default_provider="local") == EXTRACTIVE
    assert summary_model("auto", served, default_provider="anthropic") == (claude, "claude-haiku-4-5")
    assert summary_model("off", served, default_provider="anthropic") is None
    assert summary_model("anthropic:claude-sonnet-4-6", served, default_provider="local") == (
        claude,
        "claude-sonnet-4-6",
    )
    with pytest.raises(ValueError, match="PARLEY_SUMMARY_MODEL"):
        summary_model("anthropic:claude-opus-9", served, default_provider="local")
    assert Settings.model_fields["summary_model"].default == "auto"


def test_a_summary_is_due_once_past_fifteen_messages_when_the_window_moves() -> None:
    assert summary_due(total_messages=14, summarized=0, window=10) is None
    assert summary_due(total_messages=15, summarized=0, window=10) == 6
    assert summary_due(total_messages=16, summarized=6, window=10) is None
    assert summary_due(total_messages=18, summarized=6, window=10) == 12


class GatedProvider(LocalProvider):
    """Says a little, then waits for `release` before it finishes: a turn to lose its lease in."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]:
        yield TextDelta("Descale ")
        await self.release.wait()
        yield Finished(common_pb2.TokenUsage(input_tokens=10, output_tokens=2), "stop", provider=self.name, model=model)


class PricedEndlessProvider(EndlessProvider):
    """An endless turn on a model usage-svc prices (Haiku), so its hold is money."""

    name = "anthropic"
    default_model = "claude-haiku-4-5"
    models = ("claude-haiku-4-5",)


async def lapse(sessions: db.Sessions, *turn_ids: str) -> None:
    """The replica running these turns stopped renewing their leases long enough ago."""
    async with sessions.begin() as session:
        await session.execute(
            update(turns).where(turns.c.id.in_(turn_ids)).values(lease_expires_at=func.now() - timedelta(seconds=1))
        )


async def add_lapsed_turn(
    session: AsyncSession, h: Harness, conversation_id: str, turn_id: str, *, provider: str, model: str
) -> None:
    """A running turn whose replica is long gone: its lease lapsed a second ago."""
    await store.add_turn(
        session=session,
        owner=h.owner,
        conversation_id=conversation_id,
        turn_id=turn_id,
        lease=timedelta(seconds=-1),
        provider=provider,
        model=model,
    )


async def test_a_turn_whose_replica_died_is_interrupted_billed_at_its_hold_and_its_stream_ended(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    usage_svc: tuple[str, Budgets, Recorder],
    usage_client: UsageClient,
) -> None:
    _, budgets, recorder = usage_svc
    client = usage_client
    h = await harness(settings, sessions, nats_client, provider=PricedEndlessProvider(), usage=client)
    # Replica A takes a turn, says "Descale " and dies: it stops renewing the turn's lease (its task
    # lingers in this test process, as a replica that froze would).
    replica_a = h.runner
    dead = await replica_a.start(h.identity, h.ask())
    await asyncio.sleep(0.1)
    hold = (await budgets.quota(tenant_id=h.identity.tenant_id)).reserved_micros
    assert hold > 0
    # Replica C runs a turn of its own and is alive: it renews its lease.
    c = await harness(settings, sessions, nats_client, provider=PricedEndlessProvider(), usage=client)
    replica_c = c.runner
    live = await replica_c.start(c.identity, c.ask())
    await lapse(sessions, dead.turn_id, live.turn_id)
    await replica_c.leases.renew()
    # Replica B sweeps.
    replica_b = (await harness(settings, sessions, nats_client)).runner

    settled = await replica_b.leases.settle_lapsed()
    assert dead.turn_id in settled and live.turn_id not in settled, "a replica's own running turns are spared"
    assert await replica_b.leases.settle_lapsed(turn_id=dead.turn_id) == []  # once only

    # The usage event charges the whole hold, and releases it.
    [billed] = await h.usage_events(dead.conversation_id)
    assert billed.billed_at_hold and not billed.success
    assert await recorder.record(billed)
    quota = await budgets.quota(tenant_id=h.identity.tenant_id)
    assert quota.spent_micros == hold
    # Every client of the turn is told, after what it had seen.
    relay = OutboxRelay(sessions=sessions, table=outbox, js=nats_client.jetstream())
    while await relay.publish_pending():
        pass
    read = await read_turn(nats_client, dead)
    assert [event.WhichOneof("kind") for event in read] == ["delta", "error"]
    assert [event.seq for event in read] == [1, 2]
    assert read[-1].error.code == "interrupted" and "billed at its budget hold" in read[-1].error.message
    view = await h.conversations.turn(h.owner, conversation_id=dead.conversation_id, turn_id=dead.turn_id)
    assert view.turn.state == "interrupted"
    # Cancel tells the truth about it.
    with pytest.raises(NotFound, match="was interrupted"):
        await replica_b.cancel(h.owner, conversation_id=dead.conversation_id, turn_id=dead.turn_id)
    live_view = await c.conversations.turn(c.owner, conversation_id=live.conversation_id, turn_id=live.turn_id)
    assert live_view.turn.state == "running"
    assert replica_c.cancel_here(c.owner, conversation_id=live.conversation_id, turn_id=live.turn_id)
    # The frozen replica wakes and cancels its turn: settled already, nothing more is billed.
    assert replica_a.cancel_here(h.owner, conversation_id=dead.conversation_id, turn_id=dead.turn_id)
    await replica_a.drain(grace_seconds=1)
    assert await h.usage_events(dead.conversation_id) == [], "no second usage event joins the relayed one"


async def test_cancelling_a_turn_whose_replica_died_settles_it_at_once(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client, provider=EndlessProvider())
    orphan = str(uuid.uuid4())
    started = await h.runner.start(h.identity, h.ask())
    async with sessions.begin() as session:
        await add_lapsed_turn(session, h, started.conversation_id, orphan, provider="local", model="local")
        await store.set_turn_hold(session=session, turn_id=orphan, reservation_id=str(uuid.uuid4()))
    elsewhere = (await harness(settings, sessions, nats_client)).runner

    with pytest.raises(NotFound, match="was interrupted"):
        await elsewhere.cancel(h.owner, conversation_id=started.conversation_id, turn_id=orphan)
    assert [event.billed_at_hold for event in await h.usage_events(started.conversation_id)] == [True]
    h.runner.cancel_here(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)


async def test_a_turn_whose_replica_died_before_recording_its_hold_is_failed_and_its_hold_released(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    usage_svc: tuple[str, Budgets, Recorder],
    usage_client: UsageClient,
) -> None:
    _, budgets, _ = usage_svc
    client = usage_client
    h = await harness(settings, sessions, nats_client, usage=client)
    first = await h.runner.start(h.identity, h.ask())
    await read_turn(nats_client, first)
    # A replica wrote the turn and placed its hold, then died before recording the hold on the turn.
    turn_id = str(uuid.uuid4())
    async with sessions.begin() as session:
        await add_lapsed_turn(
            session, h, first.conversation_id, turn_id, provider="anthropic", model="claude-haiku-4-5"
        )
    await client.reserve(
        h.identity,
        provider="anthropic",
        model="claude-haiku-4-5",
        input_tokens=1_000,
        max_output_tokens=1_000,
        idempotency_key=hold_key(turn_id),
    )
    assert (await budgets.quota(tenant_id=h.identity.tenant_id)).reserved_micros > 0

    assert await h.runner.leases.settle_lapsed(turn_id=turn_id) == [turn_id]

    # No model was called: nothing billed, the hold released, the turn failed, its clients told.
    assert (await budgets.quota(tenant_id=h.identity.tenant_id)).reserved_micros == 0
    assert all(event.billed_at_hold is False for event in await h.usage_events(first.conversation_id))
    view = await h.conversations.turn(h.owner, conversation_id=first.conversation_id, turn_id=turn_id)
    assert view.turn.state == "failed"


async def test_what_the_provider_reported_before_the_replica_died_is_what_is_billed(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client)
    first = await h.runner.start(h.identity, h.ask())
    await read_turn(nats_client, first)
    # A replica heard the provider's final figures, wrote them down, and died storing the answer.
    turn_id, hold = str(uuid.uuid4()), str(uuid.uuid4())
    reported = common_pb2.TokenUsage(input_tokens=1_200, output_tokens=300, cache_write_tokens=800)
    async with sessions.begin() as session:
        await add_lapsed_turn(
            session, h, first.conversation_id, turn_id, provider="anthropic", model="claude-sonnet-4-6"
        )
        await store.set_turn_hold(session=session, turn_id=turn_id, reservation_id=hold)
        await store.record_reported_usage(
            session=session,
            turn_id=turn_id,
            reported=store.ReportedUsage(provider="anthropic", model="claude-haiku-4-5", usage=reported),
        )

    assert await h.runner.leases.settle_lapsed(turn_id=turn_id) == [turn_id]

    [billed] = [event for event in await h.usage_events(first.conversation_id) if event.reservation_id == hold]
    assert (billed.usage, billed.model, billed.billed_at_hold) == (reported, "claude-haiku-4-5", False)


async def test_a_turn_settled_elsewhere_meanwhile_stores_and_bills_nothing_more(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    gated = GatedProvider()
    h = await harness(settings, sessions, nats_client, provider=gated)
    started = await h.runner.start(h.identity, h.ask())
    await asyncio.sleep(0.1)
    # This replica was too slow to renew its lease (a long pause): another one settled the turn.
    await lapse(sessions, started.turn_id)
    other = (await harness(settings, sessions, nats_client)).runner
    assert await other.leases.settle_lapsed(turn_id=started.turn_id) == [started.turn_id]

    gated.release.set()  # the model finishes after all
    for _ in range(50):
        if not h.runner._running.ids():
            break
        await asyncio.sleep(0.05)

    _, messages = await h.conversations.get(h.owner, started.conversation_id)
    assert messages == [], "its answer is not kept: the turn was already ended and billed"
    [billed] = await h.usage_events(started.conversation_id)
    assert billed.billed_at_hold, "one bill, the hold's"
    view = await h.conversations.turn(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)
    assert view.turn.state == "interrupted"


async def test_a_turn_renews_its_lease_while_it_runs(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    h = await harness(settings, sessions, nats_client, provider=EndlessProvider())
    started = await h.runner.start(h.identity, h.ask())
    await lapse(sessions, started.turn_id)
    await h.runner.leases.renew()
    other = (await harness(settings, sessions, nats_client)).runner
    assert started.turn_id not in await other.leases.settle_lapsed(turn_id=started.turn_id)
    h.runner.cancel_here(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)
    assert (await read_turn(nats_client, started))[-1].error.code == "cancelled"


async def test_a_turn_after_nats_lost_the_turn_stream_declares_it_again_and_answers(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    # A NATS restart loses CHATSTREAM (a memory stream): the turn declares it before it holds or calls.
    await nats_client.jetstream().delete_stream(TURN_STREAM_NAME)
    h = await harness(settings, sessions, nats_client)
    started = await h.runner.start(h.identity, h.ask())
    assert (await read_turn(nats_client, started))[-1].WhichOneof("kind") == "end"
