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


async def spend(engine: AsyncEngine, *, tenant_id: str, user_id: str, micros: int, api_key_id: str = "") -> None:
    """A billed call of `micros`, recorded in usage-svc as its consumer records one."""
    event = UsageRecorded(
        event_id=str(uuid.uuid4()), tenant_id=tenant_id, user_id=user_id, kind="chat", model="m", api_key_id=api_key_id
    )
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


async def test_a_keys_own_budget_refuses_that_key_while_the_users_other_keys_go_on(
    api: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, nats_client: NatsClient
) -> None:
    me = (await api.get("/v1/me", headers=admin)).json()
    made = await api.post(
        "/v1/api-keys", json={"name": "ci", "monthly_limit_usd": 1.0, "alert_at_usd": 0.5}, headers=admin
    )
    assert made.status_code == 201, made.text
    capped = made.json()
    assert (capped["monthly_limit_usd"], capped["alert_at_usd"]) == (1.0, 0.5)
    other = (await api.post("/v1/api-keys", json={"name": "laptop"}, headers=admin)).json()
    assert other["monthly_limit_usd"] is None
    as_capped = {"Authorization": f"Bearer {capped['key']}"}
    as_other = {"Authorization": f"Bearer {other['key']}"}
    ask = {"message": "descale?", "collection_ids": [str(uuid.uuid4())]}
    search = {"query": "descale", "collection_ids": [str(uuid.uuid4())]}
    # Under the limit: the calls go on to the backends (chat-svc and ingestion are not running here: 503).
    assert (await api.post("/v1/chat", json=ask, headers=as_capped)).status_code == 503
    assert (await api.post("/v1/search", json=search, headers=as_capped)).status_code == 503
    alerts = await nats_client.subscribe(budget_alert_subject(me["tenant_id"]))

    # The key's calls cost a dollar; the same user's calls with another key cost more, and count not.
    await spend(engine, tenant_id=me["tenant_id"], user_id=me["user"]["id"], micros=1_000_000, api_key_id=capped["id"])
    await spend(engine, tenant_id=me["tenant_id"], user_id=me["user"]["id"], micros=5_000_000, api_key_id=other["id"])

    for path, body in (("/v1/chat", ask), ("/v1/search", search), ("/v1/chat/completions", None)):
        if body is None:
            body = {"model": f"parley/{uuid.uuid4()}", "messages": [{"role": "user", "content": "descale?"}]}
        refused = await api.post(path, json=body, headers=as_capped)
        assert refused.status_code == 402, (path, refused.text)
        assert "this API key's monthly budget ($1.00) is spent" in refused.text, path
    fresh = await api.get(f"/v1/documents/{uuid.uuid4()}/artifacts", params={"fresh": "true"}, headers=as_capped)
    assert fresh.status_code == 402
    assert (await api.post("/v1/chat", json=ask, headers=as_other)).status_code == 503
    assert (await api.post("/v1/search", json=search, headers=as_other)).status_code == 503
    # Reading costs nothing: the capped key still reads.
    assert (await api.get("/v1/quota", headers=as_capped)).status_code == 200
    alert = BudgetAlert.FromString((await alerts.next_msg(timeout=5)).data)
    assert (alert.scope, alert.api_key_id, alert.user_id, alert.spent_micros, alert.alert_at_micros) == (
        "key",
        capped["id"],
        me["user"]["id"],
        1_000_000,
        500_000,
    )
    await alerts.unsubscribe()

    # Raising the key's limit lets it through again.
    raised = await api.patch(f"/v1/api-keys/{capped['id']}", json={"monthly_limit_usd": 2.0}, headers=admin)
    assert raised.status_code == 200, raised.text
    assert (raised.json()["monthly_limit_usd"], raised.json()["alert_at_usd"]) == (2.0, 0.5)
    assert (await api.post("/v1/chat", json=ask, headers=as_capped)).status_code == 503


async def test_the_usage_report_gives_each_keys_spend(
    api: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    me = (await api.get("/v1/me", headers=admin)).json()
    key = (await api.post("/v1/api-keys", json={"name": "ci"}, headers=admin)).json()
    await spend(engine, tenant_id=me["tenant_id"], user_id=me["user"]["id"], micros=250_000, api_key_id=key["id"])
    await spend(engine, tenant_id=me["tenant_id"], user_id=me["user"]["id"], micros=100_000, api_key_id=key["id"])
    await spend(engine, tenant_id=me["tenant_id"], user_id=me["user"]["id"], micros=40_000)  # single sign-on

    report = await api.get("/v1/usage", params={"group_by": "api_key"}, headers=admin)

    assert report.status_code == 200, report.text
    rows = {row["group"]: (row["events"], row["cost_usd"]) for row in report.json()["rows"]}
    assert rows == {"": (1, 0.04), key["id"]: (2, 0.35)}


async def test_a_keys_budget_is_set_by_its_holder_or_an_admin(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    member = (await api.post("/v1/users", json={"name": "Mo", "role": "member"}, headers=admin)).json()
    theirs = (await api.post("/v1/api-keys", json={"name": "k", "user_id": member["id"]}, headers=admin)).json()
    as_member = {"Authorization": f"Bearer {theirs['key']}"}
    mine = (await api.get("/v1/api-keys", headers=admin)).json()["data"][0]

    own = await api.patch(f"/v1/api-keys/{theirs['id']}", json={"alert_at_usd": 3.0}, headers=as_member)
    assert own.status_code == 200, own.text
    assert (own.json()["monthly_limit_usd"], own.json()["alert_at_usd"]) == (None, 3.0)
    # Another person's key is not the member's to see: 404, as for revoking it.
    assert (
        await api.patch(f"/v1/api-keys/{mine['id']}", json={"alert_at_usd": 1}, headers=as_member)
    ).status_code == 404
    by_admin = await api.patch(f"/v1/api-keys/{theirs['id']}", json={"monthly_limit_usd": 4.0}, headers=admin)
    assert (by_admin.json()["monthly_limit_usd"], by_admin.json()["alert_at_usd"]) == (4.0, 3.0)
    removed = await api.patch(f"/v1/api-keys/{theirs['id']}", json={"alert_at_usd": None}, headers=admin)
    assert (removed.json()["monthly_limit_usd"], removed.json()["alert_at_usd"]) == (4.0, None)
    listed = (await api.get("/v1/api-keys", headers=as_member)).json()["data"]
    assert [(key["id"], key["monthly_limit_usd"]) for key in listed] == [(theirs["id"], 4.0)]
    for body in ({"monthly_limit_usd": False}, {"monthly_limit_usd": -1}, {"monthly_limit_usd": "5"}, {"other": 1}):
        refused = await api.patch(f"/v1/api-keys/{theirs['id']}", json=body, headers=admin)
        assert refused.status_code == 422, body
    other_tenant = await api.patch(f"/v1/api-keys/{uuid.uuid4()}", json={"alert_at_usd": 1}, headers=admin)
    assert other_tenant.status_code == 404
