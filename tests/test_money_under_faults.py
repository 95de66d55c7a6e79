"""Money and service survive faults (issue 16), on the whole platform against a fake Claude.

Concurrent long turns never spend past a budget (a hold is an upper bound), a fallback to a dearer
model stays within its hold, an attempt Claude billed before it broke is billed (once), and a
cancelled turn is billed no less than Claude served for it. Streamed turns run
while chat-svc, usage-svc and NATS are each killed with SIGKILL and brought back by the launcher;
afterwards an operator finds, in the database: every turn ended (none left `running`), every turn
billed exactly once, no hold left held, and the ledger at least what the fake provider served;
and chat served again after each fault (the seconds until the first successful turn are printed:
BENCHMARKS.md keeps them).
"""

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import nats
import pytest

from parley.chat.metering import attempt_event_id
from parley.kit.contracts import USAGE_RECORDED
from parley.kit.devstack import Platform
from parley.v1 import common_pb2, events_pb2
from tests.fakes.anthropic_server import FakeAnthropic, Served
from tests.fakes.scripting import Script
from tests.platforms import NO_RATE_LIMITS, eventually, running_platform, sql

# chat-svc's default Claude, and the dearer model it falls back to: usage-svc lists no price for
# it, so it is billed at the table's `default` row, the dearest (5x Sonnet).
SONNET, OPUS = "claude-sonnet-4-6", "claude-opus-4-6"
# usage-svc's rows, micro-USD per million tokens: input, output, cache read, cache write (5 minutes),
# cache write (an hour: 2x input).
PRICES = {
    SONNET: (3_000_000, 15_000_000, 300_000, 3_750_000, 6_000_000),
    OPUS: (15_000_000, 75_000_000, 1_500_000, 18_750_000, 30_000_000),
}
LEASE_SECONDS, SWEEP_SECONDS = 3, 1
TURNS_PER_FAULT = 8
RETRIES = 2


def served_cost(call: Served) -> int:
    """What the provider charges for a call, at usage-svc's prices, rounded up as usage-svc does."""
    plain, output, read, write, write_1h = PRICES[call.model]
    scaled = (
        call.usage.input_tokens * plain
        + call.output_tokens * output
        + call.usage.cache_read_input_tokens * read
        + (call.usage.cache_creation_input_tokens - call.usage.cache_creation_1h_input_tokens) * write
        + call.usage.cache_creation_1h_input_tokens * write_1h
    )
    return -(-scaled // 1_000_000)


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def paid(tmp_path_factory: pytest.TempPathFactory, claude: FakeAnthropic) -> Iterator[Platform]:
    """The platform answering with (fake) Claude, with short turn leases so the test is bounded."""
    settings = {
        "PARLEY_EMBEDDING_PROVIDER": "local",
        "PARLEY_DEFAULT_PROVIDER": "anthropic",
        "PARLEY_ANTHROPIC_API_KEY": claude.api_key,
        "PARLEY_ANTHROPIC_BASE_URL": claude.base_url,
        "PARLEY_ANTHROPIC_MODELS": f"{SONNET},{OPUS}",
        # A Sonnet call that stays unavailable through its retries goes to the dearer Opus.
        "PARLEY_LLM_FALLBACK": f"anthropic:{OPUS}",
        "PARLEY_LLM_RETRIES": str(RETRIES),
        "PARLEY_LLM_BACKOFF_BASE_SECONDS": "0.05",
        "PARLEY_LLM_BACKOFF_MAX_SECONDS": "0.2",
        "PARLEY_TURN_LEASE_SECONDS": str(LEASE_SECONDS),
        "PARLEY_TURN_HEARTBEAT_SECONDS": "1",
        "PARLEY_TURN_SWEEP_SECONDS": str(SWEEP_SECONDS),
        # A client whose answer stopped arriving is told so after this long.
        "PARLEY_TURN_IDLE_SECONDS": "40",
    }
    # Dozens of turns a minute from one key: the gateway's rate limits are not what is tested here.
    with running_platform(tmp_path_factory.mktemp("paid"), settings | NO_RATE_LIMITS) as started:
        yield started


@pytest.fixture(scope="module")
def headers(paid: Platform) -> dict[str, str]:
    assert paid.secrets is not None
    return {"Authorization": f"Bearer {paid.secrets.admin_api_key}"}


@pytest.fixture(scope="module")
def collection_id(paid: Platform, headers: dict[str, str]) -> str:
    created = httpx.post(f"{paid.gateway_url}/v1/collections", json={"name": "faults"}, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def streamed_turn(platform: Platform, headers: dict[str, str], collection_id: str, message: str) -> str:
    """Ask with `"stream": true`; how it ended for the client: `end`, `error:<code>`, `http:<status>`
    or `transport` (the connection failed)."""
    body = {"message": message, "collection_ids": [collection_id], "stream": True}
    try:
        with (
            httpx.Client(base_url=platform.gateway_url, headers=headers, timeout=httpx.Timeout(10, read=45)) as client,
            client.stream("POST", "/v1/chat", json=body) as response,
        ):
            if response.status_code != 200:
                return f"http:{response.status_code}"
            event = ""
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:") and event == "end":
                    return "end"
                elif line.startswith("data:") and event == "error":
                    return "error:" + str(json.loads(line.removeprefix("data:"))["code"])
            return "cut"
    except httpx.HTTPError:
        return "transport"


def first_success(ask: Callable[[], str], *, within: float = 60.0) -> float:
    """Ask until a turn ends well; when it did (monotonic seconds)."""
    deadline = time.monotonic() + within
    while (outcome := ask()) != "end":
        assert time.monotonic() < deadline, f"chat did not serve again within {within:.0f}s (last: {outcome})"
        time.sleep(0.2)
    return time.monotonic()


def test_concurrent_long_turns_never_spend_past_a_budget(
    paid: Platform, headers: dict[str, str], collection_id: str, claude: FakeAnthropic
) -> None:
    claude.behaviour.pace = 0.1  # over a second an answer: the turns overlap
    api = httpx.Client(base_url=paid.gateway_url, headers=headers, timeout=60)

    def long_message(number: int) -> str:
        # 7,900 characters, each message its own: a Claude cache write (1.25x input) of most of it.
        words = f"Turn {number} {uuid.uuid4().hex}: how often is the boiler descaled, and with what? "
        return (words * 200)[:7_900]

    def chat(number: int) -> httpx.Response:
        # A short answer: the prompt, written to cache at 1.25x input, is most of the cost.
        body = {"message": long_message(number), "collection_ids": [collection_id], "max_tokens": 16}
        return api.post("/v1/chat", json=body)

    first = chat(0)
    assert first.status_code == 200, first.text
    tenant = sql(paid, "SELECT tenant_id FROM chat.conversations WHERE id = %s", first.json()["conversation_id"])[0][0]

    def spent() -> tuple[int, int]:
        """The tenant's spend (every kind of usage) and how many chat calls it has been billed for."""
        rows = sql(
            paid,
            "SELECT coalesce(sum(cost_micros), 0), count(*) FILTER (WHERE kind = 'chat') "
            "FROM usage.usage_events WHERE tenant_id = %s",
            tenant,
        )
        return int(rows[0][0]), int(rows[0][1])

    one_turn, _ = eventually(lambda: spent()[1] == 1 and spent(), within=30, what="the first turn is billed")
    # Room for five such turns' holds (the issue's setup: with holds that under-priced a turn, five
    # were admitted and spent 126 % of it).
    [(hold,)] = sql(paid, "SELECT reserved_micros FROM usage.reservations WHERE tenant_id = %s", tenant)
    limit = 5 * hold
    assert api.put("/v1/budget", json={"monthly_limit_usd": (one_turn + limit) / 1_000_000}).status_code == 200
    try:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(chat, range(1, 13)))
        statuses = sorted(answer.status_code for answer in answers)
        assert set(statuses) <= {200, 402}, statuses
        # Five at once; more only as answers finish and their holds give way to what they cost.
        admitted = statuses.count(200)
        assert admitted >= 5, statuses
        total, _ = eventually(
            lambda: (figures := spent())[1] == 1 + admitted and figures, within=30, what="every admitted turn is billed"
        )
        assert total - one_turn <= limit, f"spent {total - one_turn} of a {limit} micro-USD budget"
        print(f"\nbudget for five holds: {admitted} of 12 admitted, spent {total - one_turn} of {limit} micro-USD")
    finally:
        api.delete("/v1/budget")
        api.close()


def chat_bills(platform: Platform, conversation_id: str) -> list[tuple[str, str, bool, str, int]]:
    """The conversation's chat usage events usage-svc recorded: event id, model, success, hold, cost."""
    rows = sql(
        platform,
        "SELECT event_id, model, success, reservation_id, cost_micros FROM usage.usage_events "
        "WHERE conversation_id = %s AND kind = 'chat' ORDER BY occurred_at",
        conversation_id,
    )
    return [(str(a), str(b), bool(c), str(d), int(e)) for a, b, c, d, e in rows]


def billed_once_each(platform: Platform, conversation_id: str, events: int) -> list[tuple[str, str, bool, str, int]]:
    return eventually(
        lambda: len(bills := chat_bills(platform, conversation_id)) == events and bills,
        within=30,
        what=f"{events} usage events recorded for the turn",
    )


def test_a_stream_broken_before_its_first_token_bills_both_attempts_once(
    paid: Platform, headers: dict[str, str], collection_id: str, claude: FakeAnthropic
) -> None:
    """Claude reports (and bills) a call's input in message_start; a stream that breaks right after,
    before any text, is retried: both calls are billed, the broken one on its own, and replaying its
    usage event bills nothing more."""
    claude.reset()
    claude.behaviour.pace = 0.0
    claude.script(Script.break_after(0))
    body = {"message": "How often is the boiler descaled?", "collection_ids": [collection_id]}
    answer = httpx.post(f"{paid.gateway_url}/v1/chat", json=body, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    conversation_id, turn_id = answer.json()["conversation_id"], answer.json()["turn_id"]

    broken, answered = claude.served
    assert broken.output_tokens == 1 and answered.output_tokens > 1
    bills = billed_once_each(paid, conversation_id, 2)
    [attempt] = [bill for bill in bills if not bill[2]]
    assert attempt[0] == attempt_event_id(turn_id, 1) and attempt[3] == "", "its own event, naming no hold"
    assert sum(bill[4] for bill in bills) >= served_cost(broken) + served_cost(answered)

    # The attempt's event delivered again (past JetStream's duplicate window): recorded once. A
    # marker event sent after it says when usage-svc has read both.
    [(tenant_id, user_id, input_tokens, output_tokens, read, written)] = sql(
        paid,
        "SELECT tenant_id, user_id, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens "
        "FROM usage.usage_events WHERE event_id = %s",
        attempt[0],
    )
    replay = events_pb2.UsageRecorded(
        event_id=attempt[0],
        tenant_id=tenant_id,
        user_id=user_id,
        kind="chat",
        provider="anthropic",
        model=SONNET,
        usage=common_pb2.TokenUsage(
            input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=read, cache_write_tokens=written
        ),
        conversation_id=conversation_id,
    )
    marker = events_pb2.UsageRecorded(
        event_id=str(uuid.uuid4()), tenant_id=tenant_id, user_id=user_id, kind="intent", provider="local", model="local"
    )

    async def publish() -> None:
        client = await nats.connect(paid.nats_url)
        try:
            for event in (replay, marker):
                await client.jetstream().publish(
                    USAGE_RECORDED, event.SerializeToString(), headers={"Nats-Msg-Id": str(uuid.uuid4())}
                )
        finally:
            await client.close()

    asyncio.run(publish())
    eventually(
        lambda: sql(paid, "SELECT 1 FROM usage.usage_events WHERE event_id = %s", marker.event_id),
        within=30,
        what="usage-svc read the replay",
    )
    assert chat_bills(paid, conversation_id) == bills, "a replayed attempt is not billed again"


def test_a_cancelled_turn_is_billed_no_less_than_the_provider_served(
    paid: Platform, headers: dict[str, str], collection_id: str, claude: FakeAnthropic
) -> None:
    claude.reset()
    claude.behaviour.pace = 0.1  # about two seconds an answer
    body = {"message": "When is the boiler descaled?", "collection_ids": [collection_id], "stream": True}
    with (
        httpx.Client(base_url=paid.gateway_url, headers=headers, timeout=httpx.Timeout(10, read=45)) as client,
        client.stream("POST", "/v1/chat", json=body) as response,
    ):
        assert response.status_code == 200
        conversation_id, turn_id = response.headers["X-Conversation-Id"], response.headers["X-Turn-Id"]
        deltas = 0
        for line in response.iter_lines():
            deltas += line.startswith("event:") and line.removeprefix("event:").strip() == "delta"
            if deltas == 3:
                break
        cancelled = client.post(f"/v1/conversations/{conversation_id}/turns/{turn_id}/cancel")
        assert cancelled.status_code == 202, cancelled.text

    [(_, _, success, _, cost)] = billed_once_each(paid, conversation_id, 1)
    [served] = claude.served
    assert not success and 0 < served.output_tokens < 24, "cut off mid-answer"
    assert cost >= served_cost(served), f"Claude served {served_cost(served)} micro-USD, the ledger shows {cost}"


def test_a_fallback_to_a_dearer_model_stays_within_the_hold(
    paid: Platform, headers: dict[str, str], collection_id: str, claude: FakeAnthropic
) -> None:
    """Sonnet stays overloaded, Opus (5x its price) answers with all of max_tokens: held at Sonnet's
    price, the answer would cost more than its hold."""
    claude.reset()
    claude.behaviour.pace = 0.0
    claude.script(*[Script.reject(529)] * (RETRIES + 1), Script(answer="descale " * 1_000))
    body = {"message": "Tell me everything.", "collection_ids": [collection_id], "max_tokens": 800}
    answer = httpx.post(f"{paid.gateway_url}/v1/chat", json=body, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"]["model"] == OPUS

    [(_, model, success, reservation_id, cost)] = billed_once_each(paid, answer.json()["conversation_id"], 1)
    [served] = claude.served
    assert (model, success, served.model, served.output_tokens) == (OPUS, True, OPUS, 800)
    [(held,)] = sql(paid, "SELECT reserved_micros FROM usage.reservations WHERE id::text = %s", reservation_id)
    assert served_cost(served) <= cost <= held, f"an answer of {cost} micro-USD under a hold of {held}"


def test_turns_are_billed_ended_and_served_again_whatever_is_killed(
    paid: Platform, headers: dict[str, str], collection_id: str, claude: FakeAnthropic
) -> None:
    claude.reset()
    claude.behaviour.pace = 0.1  # about two seconds an answer: long enough to be killed in
    since = sql(paid, "SELECT now()")[0][0]
    assert isinstance(since, datetime)
    counter = iter(range(10_000))

    def ask() -> str:
        return streamed_turn(paid, headers, collection_id, f"Question {next(counter)}: when is the boiler descaled?")

    def sigkill_service(name: str) -> Callable[[], None]:
        def kill() -> None:
            process = paid.children[name].process
            assert process is not None
            os.kill(process.pid, signal.SIGKILL)  # a crash: the launcher restarts it

        return kill

    def sigkill_nats() -> None:
        assert paid.nats is not None and paid.nats._process is not None
        os.kill(paid.nats._process.pid, signal.SIGKILL)  # the launcher restarts it on its own store

    recovery: dict[str, float] = {}
    outcomes: dict[str, list[str]] = {}
    for name, fault in (("chat", sigkill_service("chat")), ("usage", sigkill_service("usage")), ("nats", sigkill_nats)):
        with ThreadPoolExecutor(TURNS_PER_FAULT) as pool:
            turns = [pool.submit(ask) for _ in range(TURNS_PER_FAULT)]
            time.sleep(0.8)  # the turns are mid-answer
            killed = time.monotonic()
            fault()
            recovery[name] = first_success(ask) - killed
            outcomes[name] = [turn.result() for turn in turns]
    print(f"\nseconds from SIGKILL to the first successful turn: {recovery}\nwhat clients saw: {outcomes}")

    # The turns whose replica died were told so (by the replica that settled them), not left hanging;
    # those streaming through a NATS restart are told at once that their stream was lost.
    assert "error:interrupted" in outcomes["chat"], outcomes["chat"]
    assert "error:timeout" not in outcomes["nats"], outcomes["nats"]

    def unsettled() -> dict[str, int]:
        """What is left undone: turns running, holds held, turns without a usage event."""
        [(running,)] = sql(paid, "SELECT count(*) FROM chat.turns WHERE state = 'running' AND created_at >= %s", since)
        [(held,)] = sql(
            paid, "SELECT count(*) FROM usage.reservations WHERE status = 'held' AND created_at >= %s", since
        )
        [(unbilled,)] = sql(
            paid,
            "SELECT count(*) FROM chat.turns t WHERE t.created_at >= %s AND t.reservation_id <> '' AND NOT EXISTS "
            "(SELECT 1 FROM usage.usage_events e WHERE e.reservation_id = t.reservation_id)",
            since,
        )
        return {name: count for name, count in (("running", running), ("held", held), ("unbilled", unbilled)) if count}

    left = unsettled()
    deadline = time.monotonic() + LEASE_SECONDS + SWEEP_SECONDS + 30
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = unsettled()
    assert left == {}, "turns left running, holds left held or turns never billed"
    # A turn without a hold never called the model (its replica died while it started).
    [(turns_taken,)] = sql(
        paid, "SELECT count(*) FROM chat.turns WHERE created_at >= %s AND reservation_id <> ''", since
    )
    doubles = sql(
        paid,
        "SELECT reservation_id, count(*) FROM usage.usage_events WHERE kind = 'chat' AND occurred_at >= %s "
        "AND reservation_id <> '' GROUP BY reservation_id HAVING count(*) > 1",
        since,
    )
    assert doubles == [], "a turn billed twice"
    [(billed,)] = sql(
        paid,
        "SELECT coalesce(sum(cost_micros), 0) FROM usage.usage_events WHERE kind = 'chat' AND occurred_at >= %s",
        since,
    )
    served = sum(served_cost(call) for call in claude.served)
    print(f"{turns_taken} turns, {len(claude.served)} provider calls served ({served} micro-USD), billed {billed}")
    assert len(claude.served) <= turns_taken, "a provider call without a turn"
    assert billed >= served, f"the provider served {served} micro-USD, the ledger shows {billed}"
