"""API keys and the error contract, on the real database; backends that are down."""

import uuid

import httpx
import pytest

from parley.gateway import auth, store
from parley.gateway.chat_turns import sse_frame
from parley.gateway.config import Settings
from parley.kit import db
from parley.v1 import chat_pb2, events_pb2


@pytest.fixture
def key() -> str:
    return "pk_" + uuid.uuid4().hex


async def make_key(sessions: db.Sessions, key: str, pepper: str) -> store.Principal:
    async with sessions.begin() as session:
        return await store.create_tenant_with_admin(
            session=session, tenant_name=f"t-{uuid.uuid4().hex[:8]}", key_hash=auth.hash_api_key(key, pepper=pepper)
        )


def test_keys_are_stored_as_a_peppered_hash() -> None:
    hashed = auth.hash_api_key("pk_abc", pepper="one")
    assert hashed != auth.hash_api_key("pk_abc", pepper="two")
    assert "pk_abc" not in hashed and len(hashed) == 64


async def test_a_key_authenticates_as_its_tenant_and_nothing_else(sessions: db.Sessions, key: str) -> None:
    principal = await make_key(sessions, key, "pepper-a")
    assert await auth.authenticate(sessions, key, pepper="pepper-a") == principal
    assert await auth.authenticate(sessions, key, pepper="pepper-b") is None
    assert await auth.authenticate(sessions, key + "x", pepper="pepper-a") is None


async def test_bootstrap_creates_the_first_key_only_once(sessions: db.Sessions, key: str) -> None:
    await auth.bootstrap(sessions, key, pepper="pepper-c")
    assert await auth.bootstrap(sessions, "pk_" + uuid.uuid4().hex, pepper="pepper-c") is False


def test_the_pepper_must_be_real_outside_dev() -> None:
    with pytest.raises(ValueError, match="PARLEY_API_KEY_PEPPER"):
        Settings(
            env="prod",
            database_url="postgresql://db/x",
            nats_url="nats://n:4222",
            ingestion_target="i:1",
            chat_target="c:1",
            usage_target="u:1",
            retrieval_target="r:1",
            api_key_pepper="changeme",
        )


async def test_no_key_or_a_wrong_key_is_401_in_the_error_shape(gateway: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer pk_nope"}, {"X-API-Key": "pk_nope"}):
        response = await gateway.get("/v1/collections", headers=headers)
        assert response.status_code == 401
        body = response.json()
        assert body["error"]["code"] == "unauthenticated"
        assert body["error"]["request_id"] == response.headers["X-Request-ID"]


async def test_a_client_request_id_is_kept_when_it_is_a_plain_token(gateway: httpx.AsyncClient) -> None:
    kept = await gateway.get("/healthz", headers={"X-Request-ID": "client-req-12345"})
    assert kept.headers["X-Request-ID"] == "client-req-12345"
    replaced = await gateway.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert replaced.headers["X-Request-ID"] != "bad id\nwith newline"


async def test_invalid_bodies_name_the_field(
    gateway: httpx.AsyncClient, sessions: db.Sessions, key: str, pepper: str
) -> None:
    await make_key(sessions, key, pepper)
    auth_header = {"Authorization": f"Bearer {key}"}
    response = await gateway.post("/v1/chat", json={"message": "x" * 8001}, headers=auth_header)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "message"
    unknown = await gateway.post("/v1/collections", json={"name": "a", "colour": "red"}, headers=auth_header)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["field"] == "colour"


async def test_nul_characters_are_refused_by_name(
    gateway: httpx.AsyncClient, sessions: db.Sessions, key: str, pepper: str
) -> None:
    await make_key(sessions, key, pepper)
    response = await gateway.post(
        "/v1/collections", json={"name": "a\u0000b"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "name"


async def test_an_oversized_upload_is_refused_before_its_body_is_read(
    gateway: httpx.AsyncClient, sessions: db.Sessions, key: str, pepper: str
) -> None:
    await make_key(sessions, key, pepper)
    response = await gateway.post(
        f"/v1/collections/{uuid.uuid4()}/documents",
        files={"file": ("big.txt", b"x" * 200 * 1024, "text/plain")},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.headers["X-Request-ID"] == response.json()["error"]["request_id"]


async def test_a_backend_that_is_down_is_503_without_internals(
    gateway: httpx.AsyncClient, sessions: db.Sessions, key: str, pepper: str
) -> None:
    await make_key(sessions, key, pepper)
    response = await gateway.get("/v1/collections", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert "127.0.0.1" not in response.text


async def test_readiness_checks_the_database_and_nats(gateway: httpx.AsyncClient) -> None:
    assert (await gateway.get("/readyz")).json() == {"status": "ready"}
    assert "parley_gateway_http_requests_total" in (await gateway.get("/metrics")).text


def test_turn_events_become_sse_frames_with_their_seq_as_id() -> None:
    delta = events_pb2.TurnEvent(seq=3, delta=events_pb2.TurnDelta(text="Descale"))
    assert sse_frame(delta) == {"id": "3", "event": "delta", "data": '{"text": "Descale"}'}
    sources = events_pb2.TurnEvent(
        seq=4, sources=events_pb2.TurnSources(sources=[chat_pb2.Source(index=1, document_id="d1")])
    )
    frame = sse_frame(sources)
    assert frame["event"] == "sources" and '"document_id": "d1"' in frame["data"]
    end = events_pb2.TurnEvent(seq=5, conversation_id="c", turn_id="t", end=events_pb2.TurnEnd(finish_reason="stop"))
    assert '"finish_reason": "stop"' in sse_frame(end)["data"]
