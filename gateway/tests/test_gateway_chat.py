"""The chat routes with a fake chat-svc behind the ChatBackend Protocol, real PostgreSQL (keys)
and real NATS (the turn's events): what a client sees of starting, streaming and reading turns."""

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

import grpc
import httpx
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NatsClient
from sqlalchemy import func, select

from parley.gateway import auth, store
from parley.gateway.models import rate_counters
from parley.kit import db
from parley.kit.contracts import turn_event_msg_id, turn_subject
from parley.v1 import chat_pb2, common_pb2, events_pb2

STORED_AT = datetime(2026, 3, 1, 12, 0, 5, 250000, tzinfo=UTC)


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)


def stamp(moment: datetime) -> Timestamp:
    stamped = Timestamp()
    stamped.FromDatetime(moment)
    return stamped


class FakeChat:
    """chat-svc as the gateway sees it: turns it starts, turns it knows, one stored conversation."""

    def __init__(self) -> None:
        self.requests: list[chat_pb2.StartTurnRequest] = []
        self.refuse_budget = False
        self.next_turn = (str(uuid.uuid4()), str(uuid.uuid4()))
        self.turns: dict[tuple[str, str], chat_pb2.Turn] = {}
        self.conversations: dict[str, chat_pb2.Conversation] = {}
        self.exports: list[str] = []  # the formats asked for

    async def start_turn(self, who: store.Principal, request: chat_pb2.StartTurnRequest) -> chat_pb2.StartTurnResponse:
        self.requests.append(request)
        if self.refuse_budget:
            raise rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "this call may cost up to 90 micro-USD")
        if request.conversation_id and request.conversation_id not in self.conversations:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"conversation {request.conversation_id} not found")
        conversation_id, turn_id = self.next_turn
        return chat_pb2.StartTurnResponse(conversation_id=conversation_id, turn_id=turn_id)

    async def get_turn(self, who: store.Principal, conversation_id: str, turn_id: str) -> chat_pb2.Turn:
        if (conversation_id, turn_id) not in self.turns:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"turn {turn_id} not found")
        return self.turns[conversation_id, turn_id]

    async def cancel_turn(self, who: store.Principal, conversation_id: str, turn_id: str) -> None:
        raise rpc_error(grpc.StatusCode.NOT_FOUND, f"turn {turn_id} is not running")

    async def get_conversation(
        self, who: store.Principal, conversation_id: str, page: common_pb2.PageRequest | None = None
    ) -> chat_pb2.Conversation:
        if conversation_id not in self.conversations:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"conversation {conversation_id} not found")
        return self.conversations[conversation_id]

    async def list_conversations(
        self, who: store.Principal, page: common_pb2.PageRequest
    ) -> chat_pb2.ListConversationsResponse:
        return chat_pb2.ListConversationsResponse(conversations=list(self.conversations.values()))

    async def delete_conversation(self, who: store.Principal, conversation_id: str) -> None:
        self.conversations.pop(conversation_id)

    async def export_conversation(
        self, who: store.Principal, conversation_id: str, format: str
    ) -> chat_pb2.ExportConversationResponse:
        self.exports.append(format)
        conversation = await self.get_conversation(who, conversation_id)
        return chat_pb2.ExportConversationResponse(
            content_type="text/markdown; charset=utf-8", content=f"# {conversation.title}\n".encode()
        )


@pytest.fixture
def chat() -> FakeChat:
    return FakeChat()


@pytest_asyncio.fixture
async def client(
    open_gateway: Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]],
    sessions: db.Sessions,
    pepper: str,
    chat: FakeChat,
) -> AsyncIterator[httpx.AsyncClient]:
    key = "pk_" + uuid.uuid4().hex
    async with sessions.begin() as session:
        await store.create_tenant_with_admin(
            session=session, tenant_name=f"t-{uuid.uuid4().hex[:8]}", key_hash=auth.hash_api_key(key, pepper=pepper)
        )
    async with open_gateway(chat=chat, turn_idle_seconds=5) as http:
        http.headers["Authorization"] = f"Bearer {key}"
        yield http


CONTEXT_USED = chat_pb2.ContextUsed(
    intent="local_edit",
    intent_source="keywords",
    retrieval="positional",
    tier="deep",
    budget_tokens=20_000,
    parts=[chat_pb2.ContextPart(name="system", tokens=40), chat_pb2.ContextPart(name="local", tokens=300)],
    trimmed=["conversation: the 2 oldest of 10 messages"],
    cache_read_tokens=1_500,
)
CONTEXT_USED_JSON = {
    "intent": "local_edit",
    "intent_source": "keywords",
    "retrieval": "positional",
    "tier": "deep",
    "budget_tokens": 20_000,
    "parts": [{"name": "system", "tokens": 40}, {"name": "local", "tokens": 300}],
    "trimmed": ["conversation: the 2 oldest of 10 messages"],
    "notes": [],
    "cache_read_tokens": 1_500,
    "cache_write_tokens": 0,
    "carried_passages": 0,
    "tool_calls": [],
    "tool_rounds": 0,
    "conversation_from": 0,
    "cache_write_1h_tokens": 0,
}


async def publish_turn(nats_client: NatsClient, conversation_id: str, turn_id: str) -> None:
    """What chat-svc publishes for a turn that answers."""
    events = [
        events_pb2.TurnEvent(delta=events_pb2.TurnDelta(text="Descale every 200 shots [1].")),
        events_pb2.TurnEvent(
            sources=events_pb2.TurnSources(
                sources=[chat_pb2.Source(index=1, document_id="d1", document_title="Manual", score=0.5)]
            )
        ),
        events_pb2.TurnEvent(
            usage=events_pb2.TurnUsage(
                usage=common_pb2.TokenUsage(input_tokens=40, output_tokens=9),
                model="local",
                cost_micros=1_250,
                context_used=CONTEXT_USED,
            )
        ),
        events_pb2.TurnEvent(
            end=events_pb2.TurnEnd(
                user_message_id="u1", assistant_message_id="a1", finish_reason="stop", created_at=stamp(STORED_AT)
            )
        ),
    ]
    for seq, event in enumerate(events, start=1):
        event.conversation_id, event.turn_id, event.seq = conversation_id, turn_id, seq
        await nats_client.jetstream().publish(
            turn_subject(conversation_id, turn_id),
            event.SerializeToString(),
            headers={"Nats-Msg-Id": turn_event_msg_id(turn_id, seq)},
        )


def frames(body: str) -> list[dict[str, str]]:
    parsed: list[dict[str, str]] = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            parsed.append(fields)
    return parsed


async def test_the_request_goes_to_chat_svc_and_the_stream_is_relayed_in_order(
    client: httpx.AsyncClient, chat: FakeChat, nats_client: NatsClient
) -> None:
    conversation_id, turn_id = chat.next_turn
    await publish_turn(nats_client, conversation_id, turn_id)
    asked = await client.post(
        "/v1/chat",
        json={
            "message": "descale?",
            "collection_ids": ["c1"],
            "stream": True,
            "tier": "deep",
            "intent": "local_edit",
            "current_section_id": "chunk-7",
            "provider": "anthropic",
            "model": "claude-haiku-4-5",
        },
    )
    assert asked.status_code == 200, asked.text
    assert (asked.headers["X-Conversation-Id"], asked.headers["X-Turn-Id"]) == (conversation_id, turn_id)
    [request] = chat.requests
    assert (request.tier, request.intent_hint, request.max_tokens) == (chat_pb2.TIER_DEEP, "local_edit", 0)
    assert request.current_section_id == "chunk-7"
    assert list(request.collection_ids) == ["c1"]
    assert (request.provider, request.model) == ("anthropic", "claude-haiku-4-5")

    relayed = frames(asked.text)
    assert [(frame["id"], frame["event"]) for frame in relayed] == [
        ("1", "delta"),
        ("2", "sources"),
        ("3", "usage"),
        ("4", "end"),
    ]
    source = json.loads(relayed[1]["data"])["sources"][0]
    assert source == {
        "index": 1,
        "chunk_id": "",
        "document_id": "d1",
        "collection_id": "",
        "document_title": "Manual",
        "heading": "",
        "snippet": "",
        "score": 0.5,
    }
    assert json.loads(relayed[2]["data"]) == {
        "input_tokens": 40,
        "output_tokens": 9,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "model": "local",
        "cost_usd": 0.00125,
        "context_used": CONTEXT_USED_JSON,
    }
    end = json.loads(relayed[3]["data"])
    assert end["assistant_message_id"] == "a1" and end["finish_reason"] == "stop"
    assert datetime.fromisoformat(end["created_at"]) == STORED_AT


async def test_a_whole_answer_carries_the_stored_messages_time(
    client: httpx.AsyncClient, chat: FakeChat, nats_client: NatsClient
) -> None:
    conversation_id, turn_id = chat.next_turn
    await publish_turn(nats_client, conversation_id, turn_id)
    answered = await client.post("/v1/chat", json={"message": "descale?", "collection_ids": ["c1"]})
    assert answered.status_code == 200, answered.text
    message = answered.json()["message"]
    assert message["content"] == "Descale every 200 shots [1]."
    assert datetime.fromisoformat(message["created_at"]) == STORED_AT
    assert message["usage"]["input_tokens"] == 40 and message["model"] == "local"
    assert message["context_used"] == CONTEXT_USED_JSON and message["cost_usd"] == 0.00125


async def test_an_unknown_intent_is_refused_with_the_known_ones(client: httpx.AsyncClient, chat: FakeChat) -> None:
    asked = await client.post("/v1/chat", json={"message": "descale?", "collection_ids": ["c1"], "intent": "how_to"})
    assert asked.status_code == 422 and "local_edit, section_feedback" in asked.text
    assert chat.requests == []


async def test_a_refused_budget_hold_is_402(client: httpx.AsyncClient, chat: FakeChat) -> None:
    chat.refuse_budget = True
    refused = await client.post("/v1/chat", json={"message": "descale?", "collection_ids": ["c1"], "stream": True})
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert "90 micro-USD" in refused.json()["error"]["message"]


async def test_an_unknown_conversation_is_404(client: httpx.AsyncClient) -> None:
    missing = str(uuid.uuid4())
    for response in (
        await client.get(f"/v1/conversations/{missing}"),
        await client.post("/v1/chat", json={"message": "descale?", "conversation_id": missing}),
        await client.get(f"/v1/conversations/{missing}/turns/{uuid.uuid4()}/events"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"


async def test_a_turn_is_replayed_until_its_events_expire(
    client: httpx.AsyncClient, chat: FakeChat, nats_client: NatsClient
) -> None:
    conversation_id, turn_id = chat.next_turn
    await publish_turn(nats_client, conversation_id, turn_id)
    path = f"/v1/conversations/{conversation_id}/turns/{turn_id}/events"
    chat.turns[conversation_id, turn_id] = chat_pb2.Turn(
        id=turn_id, conversation_id=conversation_id, state=chat_pb2.TURN_STATE_COMPLETED, events_kept=True
    )
    resumed = await client.get(path, headers={"Last-Event-ID": "2"})
    assert [frame["id"] for frame in frames(resumed.text)] == ["3", "4"]

    chat.turns[conversation_id, turn_id].events_kept = False
    expired = await client.get(path)
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "turn_events_expired"
    assert f"GET /v1/conversations/{conversation_id}" in expired.json()["error"]["message"]


async def test_a_conversation_reads_as_its_stored_messages(client: httpx.AsyncClient, chat: FakeChat) -> None:
    conversation_id = str(uuid.uuid4())
    chat.conversations[conversation_id] = chat_pb2.Conversation(
        id=conversation_id,
        title="Descaling",
        collection_ids=["c1"],
        created_at=stamp(STORED_AT),
        updated_at=stamp(STORED_AT),
        messages=[
            chat_pb2.Message(id="u1", role="user", content="descale?", turn_id="t1", created_at=stamp(STORED_AT)),
            chat_pb2.Message(
                id="a1",
                role="assistant",
                content="Every 200 shots [1].",
                sources=[chat_pb2.Source(index=1, document_id="d1")],
                usage=common_pb2.TokenUsage(input_tokens=40, output_tokens=9, cache_read_tokens=3),
                model="local",
                turn_id="t1",
                created_at=stamp(STORED_AT),
                incomplete=True,
                context_used=CONTEXT_USED,
                cost_micros=2_500,
            ),
        ],
    )
    conversation = (await client.get(f"/v1/conversations/{conversation_id}")).json()
    question, answer = conversation["messages"]
    assert (question["usage"], question["model"], question["sources"]) == (None, None, [])
    assert answer["usage"] == {
        "input_tokens": 40,
        "output_tokens": 9,
        "cache_read_tokens": 3,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
    }
    assert answer["sources"][0]["document_id"] == "d1" and answer["model"] == "local"
    assert datetime.fromisoformat(answer["created_at"]) == STORED_AT
    assert (question["incomplete"], answer["incomplete"]) == (False, True)
    assert (question["context_used"], answer["context_used"]) == (None, CONTEXT_USED_JSON)
    assert (question["cost_usd"], answer["cost_usd"]) == (None, 0.0025), "unknown is null, not free"
    listed = (await client.get("/v1/conversations")).json()["data"]
    assert listed[0]["id"] == conversation_id and listed[0]["messages"] is None
    assert listed[0]["collection_ids"] == ["c1"]


async def test_a_conversation_is_exported_as_a_file(client: httpx.AsyncClient, chat: FakeChat) -> None:
    conversation_id = str(uuid.uuid4())
    chat.conversations[conversation_id] = chat_pb2.Conversation(id=conversation_id, title="Descaling")
    exported = await client.get(f"/v1/conversations/{conversation_id}/export")
    assert exported.status_code == 200, exported.text
    assert exported.text == "# Descaling\n" and exported.headers["content-type"].startswith("text/markdown")
    disposition = exported.headers["content-disposition"]
    assert disposition == f'attachment; filename="conversation-{conversation_id}.md"'
    assert (await client.get(f"/v1/conversations/{conversation_id}/export?format=json")).status_code == 200
    assert chat.exports == ["markdown", "json"]
    assert (await client.get(f"/v1/conversations/{conversation_id}/export?format=pdf")).status_code == 422
    assert (await client.get(f"/v1/conversations/{uuid.uuid4()}/export")).status_code == 404


async def test_a_turns_tokens_count_against_the_llm_tokens_a_minute(
    client: httpx.AsyncClient, chat: FakeChat, nats_client: NatsClient, sessions: db.Sessions
) -> None:
    """The tenant allows 40 tokens a minute: the first turn (49 tokens) is admitted, the next is
    refused with 429 until the minute ends, and the chat is not asked."""
    me = (await client.get("/v1/me")).json()
    async with sessions.begin() as session:
        await store.set_tenant_limits(
            session=session,
            tenant_id=me["tenant_id"],
            requests_per_minute=None,
            chat_requests_per_minute=None,
            llm_tokens_per_minute=40,
        )
    conversation_id, turn_id = chat.next_turn
    await publish_turn(nats_client, conversation_id, turn_id)
    answered = await client.post("/v1/chat", json={"message": "descale?", "collection_ids": ["c1"]})
    assert answered.status_code == 200, answered.text
    refused = await client.post("/v1/chat", json={"message": "again?", "collection_ids": ["c1"]})
    async with sessions() as session:
        windows = (
            await session.execute(
                select(
                    rate_counters.c.window_start, rate_counters.c.count, func.date_trunc("minute", func.now())
                ).where(rate_counters.c.bucket == f"user:{me['user']['id']}:tokens")
            )
        ).all()
    assert [count for _, count, _ in windows] == [49]  # charged once, when the turn ended
    ((window_start, _, minute_now),) = windows
    if window_start == minute_now:  # still the minute of the first turn's tokens (else a new window)
        assert refused.status_code == 429, refused.text
        assert "LLM tokens" in refused.json()["error"]["message"]
        assert len(chat.requests) == 1
