"""A burst of requests with one key is one lookup, not one per request: a thousand followers
joining a turn at once do not exhaust the gateway's database pool. Every request is still
answered by a lookup that began after it arrived (revocation is never missed) and counted in the
rate limits exactly as if it had come alone."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import event

from parley.gateway.single_flight import Coalescer
from parley.kit import db
from parley.kit.testing import Infra

from .conftest import PEPPER, OpenGateway
from .test_gateway_people import new_owner
from .test_gateway_rate_limits import _tenant_limit, window_counts

BURST = 200
LIMIT = 150


class SmallGateway:
    def __init__(self, client: httpx.AsyncClient, sessions: db.Sessions) -> None:
        self.client = client
        self.sessions = sessions
        self.key_lookups = 0


@pytest_asyncio.fixture
async def small_gateway(infra: Infra, open_gateway: OpenGateway, sessions: db.Sessions) -> AsyncIterator[SmallGateway]:
    """The gateway app on a database pool of two connections, counting its key lookups."""
    engine = db.create_engine(infra.database_url, pool_size=1)  # + 1 overflow
    try:
        async with open_gateway(sessions=db.session_factory(engine)) as client:
            client.timeout = httpx.Timeout(60)
            gateway = SmallGateway(client, sessions)

            def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                if "api_keys.key_hash" in statement:
                    gateway.key_lookups += 1

            event.listen(engine.sync_engine, "before_cursor_execute", count)
            yield gateway
    finally:
        await engine.dispose()


async def test_a_burst_with_one_key_is_a_few_lookups_on_a_small_pool(small_gateway: SmallGateway) -> None:
    owner = await new_owner(small_gateway.sessions, PEPPER)
    answers = await asyncio.gather(*(small_gateway.client.get("/v1/me", headers=owner) for _ in range(BURST)))
    assert [answer.status_code for answer in answers] == [200] * BURST
    # Looked up in batches (each after its requests arrived), not once per request.
    assert 1 <= small_gateway.key_lookups <= BURST // 10


async def test_a_burst_is_counted_request_by_request(small_gateway: SmallGateway) -> None:
    owner = await new_owner(small_gateway.sessions, PEPPER)
    user_id = await _tenant_limit(small_gateway.sessions, owner, requests_per_minute=LIMIT)
    answers = await asyncio.gather(*(small_gateway.client.get("/v1/me", headers=owner) for _ in range(BURST)))
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 429}
    counts = await window_counts(small_gateway.sessions, f"user:{user_id}:req")
    # Every request counted once; as many admitted as the limit allows in each window (a burst
    # that straddles a minute has two), each with its own place in the count.
    assert sum(counts) == BURST
    assert statuses.count(200) == sum(min(count, LIMIT) for count in counts)
    remaining = sorted(int(answer.headers["RateLimit-Remaining"]) for answer in answers if answer.status_code == 200)
    if len(counts) == 1:
        assert remaining == list(range(LIMIT))


async def test_a_call_arriving_while_a_batch_runs_waits_for_the_next_batch() -> None:
    coalescer: Coalescer[str, tuple[int, int]] = Coalescer()
    release, begun = asyncio.Event(), asyncio.Event()
    started: list[tuple[str, int, bool]] = []

    def runner(key: str) -> Callable[[int], Awaitable[list[tuple[int, int]]]]:
        async def run(size: int) -> list[tuple[int, int]]:
            started.append((key, size, release.is_set()))
            begun.set()
            if key == "key" and not release.is_set():
                await release.wait()  # the first batch is in flight while the others arrive
            return [(size, place) for place in range(size)]

        return run

    first = asyncio.create_task(coalescer.call("key", runner("key")))
    await begun.wait()  # the first batch has begun
    later = [asyncio.create_task(coalescer.call("key", runner("key"))) for _ in range(3)]
    other = asyncio.create_task(coalescer.call("another key", runner("another key")))
    assert await other == (1, 0)  # another key does not wait for this one's batch
    release.set()
    assert await first == (1, 0)
    # The three that arrived while the first batch ran went together, after it: a query of their
    # own, begun after they arrived, each given its place in arrival order.
    assert await asyncio.gather(*later) == [(3, 0), (3, 1), (3, 2)]
    assert started == [("key", 1, False), ("another key", 1, False), ("key", 3, True)]
