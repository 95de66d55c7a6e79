"""chat-svc `Complete`: the LLM for other services (ingestion's artifacts), held and billed as a
summary through usage-svc like a turn. Over chat-svc's real gRPC server, on real PostgreSQL and
NATS, with a real usage-svc (its gRPC server and domain; the test plays the outbox relay) and
Claude through Anthropic's SDK against the HTTP fake of its API."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import grpc
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from sqlalchemy import select

from parley.chat.clients import IngestionClient, RetrievalClient, UsageClient
from parley.chat.completions import Completions
from parley.chat.config import Settings
from parley.chat.context_builder import Prompt
from parley.chat.conversations import Conversations
from parley.chat.grpc_api import ChatApi
from parley.chat.intent import IntentClassifier
from parley.chat.memory import Summarizer
from parley.chat.metering import Meter, attempt_event_id
from parley.chat.models import outbox
from parley.chat.providers import (
    AnthropicProvider,
    LlmProvider,
    LocalProvider,
    ReliableProvider,
    RetryPolicy,
    prompt_tokens,
)
from parley.chat.providers.local import compose_digest
from parley.chat.turns import TurnRunner
from parley.kit import db
from parley.kit.contracts import MAX_COMPLETION_CHARS, USAGE_RECORDED
from parley.kit.identity import Identity
from parley.kit.outbox import OutboxRelay
from parley.kit.rpc import GrpcServer, open_channel
from parley.kit.testing import TEST_SIGNER, signed
from parley.kit.tokens import count_tokens
from parley.usage.budget import Budgets
from parley.usage.recording import Recorder
from parley.v1 import chat_pb2, chat_pb2_grpc, common_pb2, events_pb2, usage_pb2, usage_pb2_grpc
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.scripting import DEFAULT_ANSWER, Script

SONNET = "claude-sonnet-4-6"
HAIKU = "claude-haiku-4-5"
FAST = RetryPolicy(first_token_timeout=2.0, backoff_base=0.001, backoff_max=0.01)
SCENE = (
    "INT. KITCHEN - DAY. Rosa burns the toast. She swears at the smoke alarm. Her brother laughs. "
    "He catches the toast she throws. The storm outside grows louder."
)
CARD = "Write a scene card: one sentence on what happens, then the characters."


@dataclass
class Chat:
    """chat-svc's gRPC API for one tenant, and the usage-svc it bills through."""

    stub: chat_pb2_grpc.ChatServiceStub
    usage: usage_pb2_grpc.UsageServiceStub
    identity: Identity
    sessions: db.Sessions
    budgets: Budgets
    recorder: Recorder

    async def complete(self, timeout: float = 10, **fields: object) -> chat_pb2.CompleteResponse:
        request = chat_pb2.CompleteRequest(**fields)  # type: ignore[arg-type]
        return await self.stub.Complete(request, metadata=signed(self.identity), timeout=timeout)

    async def refusal(self, **fields: object) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await self.complete(**fields)
        return refused.value

    async def billed(self, request_id: str) -> list[events_pb2.UsageRecorded]:
        """The usage events chat-svc put in its outbox for this tenant and request id."""
        async with self.sessions() as session:
            query = select(outbox.c.payload).where(outbox.c.subject == USAGE_RECORDED).order_by(outbox.c.id)
            payloads = (await session.execute(query)).scalars()
            recorded = [events_pb2.UsageRecorded.FromString(payload) for payload in payloads]
        return [
            event for event in recorded if (event.tenant_id, event.request_id) == (self.identity.tenant_id, request_id)
        ]

    async def held_micros(self) -> int:
        return (await self.budgets.quota(tenant_id=self.identity.tenant_id)).reserved_micros

    async def usage_by_kind(self) -> dict[str, usage_pb2.UsageRow]:
        response = await self.usage.GetUsage(
            usage_pb2.GetUsageRequest(group_by=usage_pb2.USAGE_GROUP_BY_KIND),
            metadata=signed(self.identity),
            timeout=5,
        )
        return {row.group: row for row in response.rows}


def served(settings: Settings, claude: AnthropicProvider) -> dict[str, LlmProvider]:
    return {"local": LocalProvider(), "anthropic": ReliableProvider(claude, policy=FAST)}


@pytest_asyncio.fixture
async def chat(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    claude: AnthropicProvider,
    usage_svc: tuple[str, Budgets, Recorder],
) -> AsyncIterator[Chat]:
    target, budgets, recorder = usage_svc
    js = nats_client.jetstream()
    relay = OutboxRelay(sessions=sessions, table=outbox, js=js)  # not run: the test reads the outbox
    usage = UsageClient(target, deadline_seconds=5, signer=TEST_SIGNER)
    providers = served(settings, claude)
    # The turn's collaborators other than usage-svc are never called by Complete.
    retrieval = RetrievalClient("unused:1", deadline_seconds=1, signer=TEST_SIGNER)
    ingestion = IngestionClient("unused:1", deadline_seconds=1, signer=TEST_SIGNER)
    turns = TurnRunner(
        settings=settings,
        sessions=sessions,
        nc=nats_client,
        js=js,
        retrieval=retrieval,
        collections=ingestion,
        budget=usage,
        providers=providers,
        intents=IntentClassifier(model=None),
        memory=Summarizer(sessions=sessions, relay=relay, model=None, window=settings.history_messages),
        relay=relay,
    )
    completions = Completions.configured(settings, providers, budget=usage, meter=Meter(sessions=sessions, relay=relay))
    api = ChatApi(turns=turns, conversations=Conversations(sessions=sessions, js=js), completions=completions)
    server = GrpcServer(port=0, host="127.0.0.1", signer=TEST_SIGNER)
    server.add(chat_pb2_grpc.add_ChatServiceServicer_to_server, api, "parley.v1.ChatService")
    await server.start()
    identity = Identity(tenant_id=str(uuid.uuid4()), user_id="ingestion", request_id="call-1")
    try:
        async with open_channel(f"127.0.0.1:{server.port}") as channel, open_channel(target) as usage_channel:
            yield Chat(
                chat_pb2_grpc.ChatServiceStub(channel),
                usage_pb2_grpc.UsageServiceStub(usage_channel),
                identity,
                sessions,
                budgets,
                recorder,
            )
    finally:
        await server.stop(0)
        for client in (usage, retrieval, ingestion):
            await client.close()


async def test_local_answers_offline_with_a_digest_billed_as_a_summary(chat: Chat) -> None:
    answered = await chat.complete(system=CARD, prompt=SCENE, request_id="artifact:doc-1:1:scene_card")

    # The prompt's first five sentences (a heading's "INT." ends one): deterministic, offline.
    assert answered.text == compose_digest(Prompt(CARD, (), (), SCENE))
    assert answered.text == SCENE[: SCENE.index(" He catches")]
    assert (answered.provider, answered.model) == ("local", "local")
    assert answered.usage == common_pb2.TokenUsage(
        input_tokens=prompt_tokens(Prompt(CARD, (), (), SCENE)), output_tokens=count_tokens(answered.text)
    )

    [event] = await chat.billed("artifact:doc-1:1:scene_card")
    assert (event.kind, event.provider, event.model, event.success) == ("summary", "local", "local", True)
    assert event.usage == answered.usage and event.reservation_id and not event.conversation_id
    assert (event.tenant_id, event.user_id) == (chat.identity.tenant_id, "ingestion")
    assert await chat.recorder.record(event)  # what the relay and usage-svc's consumer do
    summary = (await chat.usage_by_kind())["summary"]
    assert (summary.events, summary.input_tokens, summary.output_tokens) == (
        1,
        answered.usage.input_tokens,
        answered.usage.output_tokens,
    )


async def test_the_usage_event_names_the_api_key_the_call_was_made_with(chat: Chat) -> None:
    """The key rides the signed identity (kit.identity) into the bill: per-key budgets read it."""
    keyless = await chat.complete(system=CARD, prompt=SCENE, request_id="artifact:doc-2:1:scene_card")
    chat.identity = replace(chat.identity, api_key_id="key-1")
    await chat.complete(system=CARD, prompt=SCENE, request_id="artifact:doc-2:1:outline")

    [without] = await chat.billed("artifact:doc-2:1:scene_card")
    [with_key] = await chat.billed("artifact:doc-2:1:outline")
    assert without.api_key_id == "" and without.usage == keyless.usage
    assert (with_key.api_key_id, with_key.user_id) == ("key-1", "ingestion")


async def test_claude_answers_through_the_sdk_and_its_hold_is_released_by_the_bill(
    chat: Chat, anthropic_fake: FakeAnthropic
) -> None:
    answered = await chat.complete(system=CARD, prompt=SCENE, provider="anthropic", max_tokens=40)

    assert (answered.text, answered.provider, answered.model) == (DEFAULT_ANSWER, "anthropic", SONNET)
    assert answered.usage.output_tokens == count_tokens(DEFAULT_ANSWER)
    [sent] = anthropic_fake.received
    assert (sent.body["model"], sent.body["max_tokens"]) == (SONNET, 40)
    assert [block["text"] for block in sent.body["system"]] == [CARD]
    assert [block["text"] for block in sent.body["messages"][0]["content"]] == [SCENE]

    # No request_id in the request: the call's own (x-request-id) is on the event.
    [event] = await chat.billed("call-1")
    assert (event.kind, event.provider, event.model, event.success) == ("summary", "anthropic", SONNET, True)
    assert event.usage == answered.usage
    assert await chat.held_micros() > 0, "held until the bill arrives"
    assert await chat.recorder.record(event)
    quota = await chat.budgets.quota(tenant_id=chat.identity.tenant_id)
    assert quota.reserved_micros == 0 and quota.spent_micros == (await chat.usage_by_kind())["summary"].cost_micros > 0


async def test_a_refused_hold_is_resource_exhausted_and_nothing_is_called_or_billed(
    chat: Chat, anthropic_fake: FakeAnthropic
) -> None:
    await chat.budgets.set_limit(tenant_id=chat.identity.tenant_id, monthly_limit_micros=0)
    refused = await chat.refusal(prompt=SCENE, provider="anthropic", request_id="refused")
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert anthropic_fake.received == []
    assert await chat.billed("refused") == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"prompt": " \n"}, "prompt must not be empty"),
        ({"prompt": "x" * (MAX_COMPLETION_CHARS - len(CARD) + 1), "system": CARD}, "the limit is"),
        ({"prompt": "a\x00b"}, "NUL"),
        ({"max_tokens": 9_000}, "max_tokens"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"kind": "chat"}, "cannot be billed as 'chat'"),
        ({"provider": "nope"}, "unknown provider 'nope'; known: local, anthropic"),
        ({"model": "gpt-x"}, f"unknown model 'gpt-x' for anthropic; known: {SONNET}"),
    ],
)
async def test_invalid_requests_are_refused_before_anything_is_held(
    chat: Chat, anthropic_fake: FakeAnthropic, fields: dict[str, object], reason: str
) -> None:
    request: dict[str, object] = {"prompt": SCENE, "provider": "anthropic", "request_id": "invalid", **fields}
    refused = await chat.refusal(**request)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in (refused.details() or "")
    assert anthropic_fake.received == [] and await chat.held_micros() == 0
    assert await chat.billed("invalid") == []


@pytest.mark.parametrize(
    ("script", "reason", "output_tokens"),
    [
        ([Script.reject(529)] * (FAST.retries + 1), "anthropic is unavailable", 0),
        ([Script.reject(401)], "anthropic refused the request", 0),
        ([Script.break_after(4)], "anthropic stopped mid-answer", 4),
    ],
)
async def test_a_provider_failure_is_unavailable_and_its_bill_releases_the_hold(
    chat: Chat, anthropic_fake: FakeAnthropic, script: list[Script], reason: str, output_tokens: int
) -> None:
    anthropic_fake.script(*script)
    failed = await chat.refusal(prompt=SCENE, provider="anthropic", request_id="failing")
    assert failed.code() == grpc.StatusCode.UNAVAILABLE
    assert reason in (failed.details() or "")
    # Retried inside chat-svc as a turn is, and no more: the channel does not run the call again.
    assert len(anthropic_fake.received) == len(script)

    [event] = await chat.billed("failing")
    assert not event.success and event.reservation_id and event.kind == "summary"
    assert event.usage.output_tokens == output_tokens  # what the provider said before it broke off
    assert await chat.held_micros() > 0
    assert await chat.recorder.record(event)
    assert await chat.held_micros() == 0


async def test_the_calls_deadline_bounds_the_provider_and_what_it_said_is_billed(
    chat: Chat, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(Script(pace=0.2))  # the whole answer would take about five seconds
    with pytest.raises(grpc.aio.AioRpcError) as given_up:
        await chat.complete(timeout=2, prompt=SCENE, provider="anthropic", request_id="slow")
    # chat-svc gives up just before the deadline, bills, and says why: its answer arrived while the
    # client still waited (not the client's own DEADLINE_EXCEEDED), with no clock read by the test.
    assert given_up.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "did not answer within the call's deadline" in (given_up.value.details() or "")

    [event] = await chat.billed("slow")
    # What Claude reported (message_start) and a bound of what it said since (its bytes): never less
    # than it served, and not the whole answer.
    [served] = anthropic_fake.served
    assert not event.success and served.output_tokens <= event.usage.output_tokens < len(DEFAULT_ANSWER)
    assert event.usage.input_tokens == served.usage.input_tokens > 0
    assert event.usage.cache_write_tokens == served.usage.cache_creation_input_tokens


async def test_an_attempt_broken_before_its_first_token_is_billed_on_its_own(
    chat: Chat, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(Script.break_after(0))
    response = await chat.complete(prompt=SCENE, provider="anthropic", request_id="broken-once")

    attempt, answered = await chat.billed("broken-once")
    assert response.text == DEFAULT_ANSWER and answered.success and answered.reservation_id
    assert attempt.event_id == attempt_event_id(answered.reservation_id, 1)
    assert not attempt.success and attempt.reservation_id == "" and attempt.kind == "summary"
    first = anthropic_fake.served[0]
    assert attempt.usage.input_tokens == first.usage.input_tokens > 0
    assert attempt.usage.output_tokens == first.output_tokens
    assert await chat.recorder.record(attempt) and not await chat.recorder.record(attempt), "recorded once"


async def test_a_request_naming_no_model_gets_the_summary_model(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    claude: AnthropicProvider,
    anthropic_fake: FakeAnthropic,
    usage_client: UsageClient,
) -> None:
    usage = usage_client
    relay = OutboxRelay(sessions=sessions, table=outbox, js=nats_client.jetstream())
    providers = served(settings, claude)
    identity = Identity(tenant_id=str(uuid.uuid4()), request_id="defaulted")
    meter = Meter(sessions=sessions, relay=relay)

    claude_models = AnthropicProvider(
        api_key=anthropic_fake.api_key, base_url=anthropic_fake.base_url, default_model=SONNET, models=[HAIKU]
    )
    providers["anthropic"] = ReliableProvider(claude_models, policy=FAST)
    summarising = settings.model_copy(update={"summary_model": f"anthropic:{HAIKU}"})
    completions = Completions.configured(summarising, providers, budget=usage, meter=meter)
    answered = await completions.complete(identity, chat_pb2.CompleteRequest(prompt=SCENE), within=5)
    assert (answered.provider, answered.model) == ("anthropic", HAIKU)
    assert [request.body["model"] for request in anthropic_fake.received] == [HAIKU]

    # Without a summary model: the default provider's default model.
    completions = Completions.configured(settings, providers, budget=usage, meter=meter)
    answered = await completions.complete(identity, chat_pb2.CompleteRequest(prompt=SCENE), within=5)
    assert (answered.provider, answered.model) == ("local", "local")
    await claude_models.close()
