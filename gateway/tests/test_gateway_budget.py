"""The budget over the public HTTP API: the gateway app in front of a real usage-svc (its gRPC
server, its schema on the real PostgreSQL). That a spent budget refuses a turn with 402 is
chat-svc's to decide (it places the hold): chat-svc/tests/test_chat_turns.py and
gateway/tests/test_gateway_chat.py show it."""

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.usage
from parley.gateway import auth, store
from parley.kit import db
from parley.kit.contracts import budget_alert_subject
from parley.kit.rpc import GrpcServer
from parley.kit.testing import TEST_SIGNER
from parley.usage import store as usage_store
from parley.usage.budget import Budgets
from parley.usage.grpc_api import UsageApi
from parley.usage.prices import Prices
from parley.usage.reports import Reports
from parley.v1 import usage_pb2_grpc
from parley.v1.events_pb2 import BudgetAlert, UsageRecorded


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


async def spend(engine: AsyncEngine, *, tenant_id: str, user_id: str, micros: int) -> None:
    """A billed call of `micros`, recorded in usage-svc as its consumer records one."""
    event = UsageRecorded(event_id=str(uuid.uuid4()), tenant_id=tenant_id, user_id=user_id, kind="chat", model="m")
    async with db.session_factory(engine).begin() as session:
        await usage_store.add_usage_event(
            session=session, event=event, cost_micros=micros, occurred_at=datetime.now(UTC)
        )


async def test_a_users_own_budget_refuses_with_402_before_anything_is_spent(
    api: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    me = (await api.get("/v1/me", headers=admin)).json()
    user_id = me["user"]["id"]
    put = await api.put(f"/v1/users/{user_id}/budget", json={"monthly_limit_usd": 1.0}, headers=admin)
    assert put.status_code == 200, put.text
    assert (await api.get(f"/v1/users/{user_id}/budget", headers=admin)).json()["monthly_limit_usd"] == 1.0
    ask = {"message": "descale?", "collection_ids": [str(uuid.uuid4())]}
    # Under the limit: the turn goes on to chat-svc (not running here: 503).
    assert (await api.post("/v1/chat", json=ask, headers=admin)).status_code == 503
    await spend(engine, tenant_id=me["tenant_id"], user_id=user_id, micros=1_000_000)
    refused = await api.post("/v1/chat", json=ask, headers=admin)
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "budget_exceeded" and "your monthly budget" in refused.text
    fresh = await api.get(f"/v1/documents/{uuid.uuid4()}/artifacts", params={"fresh": "true"}, headers=admin)
    assert fresh.status_code == 402
    # Another user of the tenant is not held by it.
    other = (await api.post("/v1/users", json={"name": "Bo", "role": "member"}, headers=admin)).json()
    key = (await api.post("/v1/api-keys", json={"name": "k", "user_id": other["id"]}, headers=admin)).json()["key"]
    assert (await api.post("/v1/chat", json=ask, headers={"Authorization": f"Bearer {key}"})).status_code == 503


async def test_a_soft_alert_is_an_event_and_a_metric(
    api: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, nats_client: NatsClient
) -> None:
    me = (await api.get("/v1/me", headers=admin)).json()
    assert (await api.put("/v1/budget/alert", json={"alert_at_usd": 0.5}, headers=admin)).status_code == 200
    alerts = await nats_client.subscribe(budget_alert_subject(me["tenant_id"]))
    before = REGISTRY.get_sample_value("parley_gateway_budget_alerts_total", {"scope": "tenant"}) or 0.0
    ask = {"message": "descale?", "collection_ids": [str(uuid.uuid4())]}
    assert (await api.post("/v1/chat", json=ask, headers=admin)).status_code == 503  # under: no alert
    await spend(engine, tenant_id=me["tenant_id"], user_id=me["user"]["id"], micros=600_000)
    assert (await api.post("/v1/chat", json=ask, headers=admin)).status_code == 503  # soft: the call goes on
    message = await alerts.next_msg(timeout=5)
    alert = BudgetAlert.FromString(message.data)
    assert (alert.scope, alert.tenant_id, alert.spent_micros, alert.alert_at_micros) == (
        "tenant",
        me["tenant_id"],
        600_000,
        500_000,
    )
    after = REGISTRY.get_sample_value("parley_gateway_budget_alerts_total", {"scope": "tenant"})
    assert after == before + 1
    await alerts.unsubscribe()
