"""Money and service survive faults (issue 16), on the whole platform against a fake Claude.

Concurrent long turns never spend past a budget (a hold is an upper bound). Streamed turns run
while chat-svc, usage-svc and NATS are each killed with SIGKILL and brought back by the launcher;
afterwards an operator finds, in the database: every turn ended (none left `running`), every turn
billed exactly once, no hold left held, and the ledger at least what the fake provider served;
and chat served again after each fault (the seconds until the first successful turn are printed:
BENCHMARKS.md keeps them).
"""

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from parley.kit.devstack import Platform, Ports
from tests.fakes.anthropic_server import FakeAnthropic, Served

# usage-svc's row for claude-sonnet-4-6, chat-svc's default Claude: micro-USD per million tokens.
SONNET_INPUT, SONNET_OUTPUT, SONNET_CACHE_READ = 3_000_000, 15_000_000, 300_000
SONNET_CACHE_WRITE, SONNET_CACHE_WRITE_1H = 3_750_000, 6_000_000
LEASE_SECONDS, SWEEP_SECONDS = 3, 1
TURNS_PER_FAULT = 8


def served_cost(call: Served) -> int:
    """What the provider charges for a call, at usage-svc's prices, rounded up as usage-svc does."""
    scaled = (
        call.usage.input_tokens * SONNET_INPUT
        + call.output_tokens * SONNET_OUTPUT
        + call.usage.cache_read_input_tokens * SONNET_CACHE_READ
        + (call.usage.cache_creation_input_tokens - call.usage.cache_creation_1h_input_tokens) * SONNET_CACHE_WRITE
        + call.usage.cache_creation_1h_input_tokens * SONNET_CACHE_WRITE_1H
    )
    return -(-scaled // 1_000_000)


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def paid(tmp_path_factory: pytest.TempPathFactory, claude: FakeAnthropic) -> Iterator[Platform]:
    """The platform answering with (fake) Claude, with short turn leases so the test is bounded."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PARLEY_")}
    environ.update(
        {
            "PARLEY_EMBEDDING_PROVIDER": "local",
            "PARLEY_DEFAULT_PROVIDER": "anthropic",
            "PARLEY_ANTHROPIC_API_KEY": claude.api_key,
            "PARLEY_ANTHROPIC_BASE_URL": claude.base_url,
            "PARLEY_TURN_LEASE_SECONDS": str(LEASE_SECONDS),
            "PARLEY_TURN_HEARTBEAT_SECONDS": "1",
            "PARLEY_TURN_SWEEP_SECONDS": str(SWEEP_SECONDS),
            # A client whose answer stopped arriving is told so after this long.
            "PARLEY_TURN_IDLE_SECONDS": "40",
            # Dozens of turns a minute from one key: the gateway's rate limits are not what is tested here.
            "PARLEY_RATE_CHAT_REQUESTS_PER_MINUTE": "0",
            "PARLEY_RATE_REQUESTS_PER_MINUTE": "0",
            "PARLEY_RATE_LLM_TOKENS_PER_MINUTE": "0",
        }
    )
    started = Platform(tmp_path_factory.mktemp("paid"), ports=Ports.free(), environ=environ)
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def headers(paid: Platform) -> dict[str, str]:
    assert paid.secrets is not None
    return {"Authorization": f"Bearer {paid.secrets.admin_api_key}"}


@pytest.fixture(scope="module")
def collection_id(paid: Platform, headers: dict[str, str]) -> str:
    created = httpx.post(f"{paid.gateway_url}/v1/collections", json={"name": "faults"}, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def sql(platform: Platform, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(platform.database_url) as conn:
        return conn.execute(query, params).fetchall()


def eventually(check: Callable[[], Any], *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not so after {within:.0f}s: {what}")
        time.sleep(0.25)
    return value


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
        "GROUP BY reservation_id HAVING count(*) > 1",
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
