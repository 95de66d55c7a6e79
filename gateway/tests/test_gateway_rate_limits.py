"""Rate limits that hold across replicas: two gateway processes over one PostgreSQL admit no
more than the limit in a window between them; the chat default is 8 a minute per user; a refusal
is 429 with Retry-After and RateLimit-* headers; a store that cannot be reached shuts the door
(503), it never opens it."""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select, update

from parley.gateway import auth, store
from parley.gateway.models import rate_counters, tenants
from parley.kit import db
from parley.kit.devstack import free_port
from parley.kit.testing import TEST_INTERNAL_SECRET, Infra

from .conftest import PEPPER, OpenGateway
from .test_gateway_people import new_owner

LIMIT = 12


def _gateway_process(infra: Infra, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    nowhere = f"127.0.0.1:{free_port()}"
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("PARLEY_")},
        "PARLEY_ENV": "test",
        "PARLEY_DATABASE_URL": infra.database_url,
        "PARLEY_NATS_URL": infra.nats_url,
        "PARLEY_LISTEN_HOST": "127.0.0.1",
        "PARLEY_HTTP_PORT": str(port),
        "PARLEY_API_KEY_PEPPER": PEPPER,
        "PARLEY_INTERNAL_SECRET": TEST_INTERNAL_SECRET,
        **{f"PARLEY_{name}_TARGET": nowhere for name in ("INGESTION", "CHAT", "USAGE", "RETRIEVAL")},
    }
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "parley.gateway"], env=env, stdout=out, stderr=out)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def two_gateways(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    logs = tmp_path_factory.mktemp("gateways")
    started = [_gateway_process(infra, logs / f"gateway-{n}.log") for n in range(2)]
    try:
        for process, url in started:
            for _ in range(300):
                assert process.poll() is None, (logs / "gateway-0.log").read_text()
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        yield [url for _, url in started]
    finally:
        for process, _ in started:
            process.terminate()
            process.wait(timeout=30)


async def _tenant_limit(sessions: db.Sessions, headers: dict[str, str], **limits: int) -> str:
    """The owner's tenant gets these limits; answers the owner's user id."""
    async with sessions.begin() as session:
        key = headers["Authorization"].removeprefix("Bearer ")
        found = await store.key_by_hash(session=session, key_hash=auth.hash_api_key(key, pepper=PEPPER))
        assert found is not None
        if limits:
            await session.execute(update(tenants).where(tenants.c.id == found.principal.tenant_id).values(**limits))
        return found.principal.user_id


async def window_counts(sessions: db.Sessions, bucket: str) -> Sequence[int]:
    """A bucket's count in each window the store kept for it."""
    async with sessions() as session:
        return (await session.scalars(select(rate_counters.c.count).where(rate_counters.c.bucket == bucket))).all()


async def test_two_replicas_admit_no_more_than_the_limit_between_them(
    two_gateways: list[str], sessions: db.Sessions
) -> None:
    owner = await new_owner(sessions, PEPPER)
    user_id = await _tenant_limit(sessions, owner, requests_per_minute=LIMIT)
    async with httpx.AsyncClient(timeout=30) as client:
        answers = await asyncio.gather(
            *(client.get(f"{two_gateways[n % 2]}/v1/me", headers=owner) for n in range(3 * LIMIT))
        )
    admitted = [answer for answer in answers if answer.status_code == 200]
    refused = [answer for answer in answers if answer.status_code == 429]
    assert len(admitted) + len(refused) == len(answers), {answer.status_code for answer in answers}
    # The count per window, as the store kept it: a run that straddles a minute has two.
    windows = await window_counts(sessions, f"user:{user_id}:req")
    assert sum(min(count, LIMIT) for count in windows) == len(admitted)
    assert len(admitted) <= LIMIT * len(windows)
    assert {answer.url.host for answer in admitted} == {"127.0.0.1"}
    assert refused, "3x the limit must be refused in part"
    refusal = refused[0]
    assert refusal.json()["error"]["code"] == "rate_limited"
    assert int(refusal.headers["Retry-After"]) >= 1
    assert refusal.headers["RateLimit-Limit"] == str(LIMIT) and refusal.headers["RateLimit-Remaining"] == "0"
    assert admitted[0].headers["RateLimit-Limit"] == str(LIMIT)


async def test_the_ninth_chat_request_of_a_minute_is_429(gateway: httpx.AsyncClient, sessions: db.Sessions) -> None:
    owner = await new_owner(sessions, PEPPER)
    user_id = await _tenant_limit(sessions, owner)
    # Invalid bodies answer at once (422); they count as requests all the same.
    answers = [(await gateway.post("/v1/chat", json={}, headers=owner)).status_code for _ in range(9)]
    windows = await window_counts(sessions, f"user:{user_id}:chat")
    if len(windows) == 1:  # a run that straddles a minute starts a new window: then all nine pass
        assert answers == [422] * 8 + [429]
    else:
        assert 429 not in answers
    assert (await gateway.get("/v1/me", headers=owner)).status_code == 200  # other routes stay open


async def test_a_tenant_sets_its_own_limits(gateway: httpx.AsyncClient, sessions: db.Sessions) -> None:
    owner = await new_owner(sessions, PEPPER)
    changed = await gateway.put(
        "/v1/tenant/limits",
        json={"requests_per_minute": None, "chat_requests_per_minute": 30, "llm_tokens_per_minute": 0},
        headers=owner,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["limits"]["chat_requests_per_minute"] == 30
    assert changed.json()["limits"]["requests_per_minute"] is None


@pytest_asyncio.fixture
async def gateway_without_store(open_gateway: OpenGateway) -> AsyncIterator[httpx.AsyncClient]:
    database_url = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    engine = db.create_engine(database_url)
    try:
        async with open_gateway(database_url=database_url, sessions=db.session_factory(engine)) as client:
            yield client
    finally:
        await engine.dispose()


async def test_an_unreachable_store_shuts_the_door(gateway_without_store: httpx.AsyncClient) -> None:
    response = await gateway_without_store.get("/v1/me", headers={"Authorization": "Bearer pk_anything"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"]
    assert (await gateway_without_store.get("/healthz")).status_code == 200
