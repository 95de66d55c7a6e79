"""The budget over the public HTTP API: the gateway app in front of a real usage-svc (its gRPC
server, its schema on the real PostgreSQL). That a spent budget refuses a turn with 402 is
chat-svc's to decide (it places the hold): chat-svc/tests/test_chat_turns.py and
gateway/tests/test_gateway_chat.py show it."""

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.usage
from parley.gateway import auth, store
from parley.kit import db
from parley.kit.rpc import GrpcServer
from parley.kit.testing import TEST_SIGNER
from parley.usage.budget import Budgets
from parley.usage.grpc_api import UsageApi
from parley.usage.prices import Prices
from parley.usage.reports import Reports
from parley.v1 import usage_pb2_grpc


@pytest_asyncio.fixture(scope="module")
async def usage_target(engine: AsyncEngine) -> AsyncIterator[str]:
    await db.migrate(engine, schema="usage", migrations=Path(parley.usage.__file__).parent / "migrations")
    usage_sessions = db.session_factory(engine)
    api = UsageApi(
        budgets=Budgets(sessions=usage_sessions, reservation_ttl=timedelta(minutes=15)),
        prices=Prices(sessions=usage_sessions),
        reports=Reports(sessions=usage_sessions, export_rows_per_chunk=500),
    )
    server = GrpcServer(port=0, host="127.0.0.1", signer=TEST_SIGNER)
    server.add(usage_pb2_grpc.add_UsageServiceServicer_to_server, api, "parley.v1.UsageService")
    await server.start()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop(0)


@pytest_asyncio.fixture(scope="module")
async def api(
    open_gateway: Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]], usage_target: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with open_gateway(usage_target=usage_target) as client:
        yield client


@pytest_asyncio.fixture
async def admin(sessions: db.Sessions, pepper: str) -> dict[str, str]:
    """The Authorization header of a new tenant's admin."""
    key = "pk_" + uuid.uuid4().hex
    async with sessions.begin() as session:
        await store.create_tenant_with_admin(
            session=session, tenant_name=f"t-{uuid.uuid4().hex[:8]}", key_hash=auth.hash_api_key(key, pepper=pepper)
        )
    return {"Authorization": f"Bearer {key}"}


async def allowed(api: httpx.AsyncClient, admin: dict[str, str]) -> bool:
    quota = (await api.get("/v1/quota", headers=admin)).json()
    return bool(quota["allowed"])


async def test_a_new_tenant_has_no_limit_and_says_so_with_null(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    assert (await api.get("/v1/budget", headers=admin)).json() == {"monthly_limit_usd": None}
    quota = (await api.get("/v1/quota", headers=admin)).json()
    assert (quota["allowed"], quota["monthly_limit_usd"]) == (True, None)


async def test_a_zero_budget_is_a_limit_of_zero_not_no_limit(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    put = await api.put("/v1/budget", json={"monthly_limit_usd": 0}, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json() == {"monthly_limit_usd": 0.0}
    assert (await api.get("/v1/budget", headers=admin)).json() == {"monthly_limit_usd": 0.0}
    quota = (await api.get("/v1/quota", headers=admin)).json()
    assert (quota["allowed"], quota["monthly_limit_usd"], quota["reserved_usd"]) == (False, 0.0, 0.0)


@pytest.mark.parametrize("remove", ["put null", "delete"])
async def test_removing_the_limit_lets_turns_through_again(
    api: httpx.AsyncClient, admin: dict[str, str], remove: str
) -> None:
    await api.put("/v1/budget", json={"monthly_limit_usd": 0}, headers=admin)
    assert not await allowed(api, admin)

    if remove == "delete":
        removed = await api.delete("/v1/budget", headers=admin)
        assert removed.status_code == 204
    else:
        removed = await api.put("/v1/budget", json={"monthly_limit_usd": None}, headers=admin)
        assert removed.json() == {"monthly_limit_usd": None}

    assert (await api.get("/v1/budget", headers=admin)).json() == {"monthly_limit_usd": None}
    assert await allowed(api, admin)


async def test_a_budget_must_be_named_and_not_negative(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for body in ({}, {"monthly_limit_usd": -1}):
        refused = await api.put("/v1/budget", json=body, headers=admin)
        assert refused.status_code == 422, body
        assert refused.json()["error"]["details"][0]["field"] == "monthly_limit_usd"


async def test_a_small_budget_is_kept_to_the_micro_dollar(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    put = await api.put("/v1/budget", json={"monthly_limit_usd": 12.345678}, headers=admin)
    assert put.json() == {"monthly_limit_usd": 12.345678}
    assert (await api.get("/v1/quota", headers=admin)).json()["monthly_limit_usd"] == 12.345678
