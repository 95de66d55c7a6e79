"""Bounded before anything else: a request without a credential is refused before its body is
read; a body sent chunked (no Content-Length) is read only up to the limit, then 413; an id longer
than any id is a 404 or 422, never a backend's metadata error. Bodies here are generators that
count what the gateway pulled from them: what it never reads, it never holds."""

from collections.abc import AsyncIterator

import httpx
import pytest

from parley.kit import db
from parley.kit.contracts import MAX_ID_CHARS

from .conftest import OpenGateway
from .test_gateway_people import new_owner

PIECE = 64 * 1024


class Endless:
    """A body of `total` bytes, sent in pieces with no length: it counts what was pulled."""

    def __init__(self, total: int, *, head: bytes = b"") -> None:
        self.total = total
        self.head = head
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.head:
            self.pulled += len(self.head)
            yield self.head
        while self.pulled < self.total:
            self.pulled += PIECE
            yield b" " * PIECE


@pytest.fixture
def small_limits() -> dict[str, int]:
    return {"max_body_bytes": 256 * 1024, "max_upload_bytes": 512 * 1024}


async def test_a_chunked_body_without_a_key_is_refused_unread(open_gateway: OpenGateway) -> None:
    body = Endless(300 * 1024 * 1024, head=b'{"name": "')
    async with open_gateway() as gateway:
        response = await gateway.post(
            "/v1/collections", content=body.__aiter__(), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert body.pulled == 0


async def test_a_chunked_json_body_stops_at_the_limit(
    open_gateway: OpenGateway, sessions: db.Sessions, pepper: str, small_limits: dict[str, int]
) -> None:
    owner = await new_owner(sessions, pepper)
    body = Endless(300 * 1024 * 1024, head=b'{"name": "')
    async with open_gateway(**small_limits) as gateway:
        response = await gateway.post(
            "/v1/collections", content=body.__aiter__(), headers={**owner, "Content-Type": "application/json"}
        )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    assert body.pulled <= small_limits["max_body_bytes"] + PIECE


async def test_a_chunked_upload_stops_at_the_limit(
    open_gateway: OpenGateway, sessions: db.Sessions, pepper: str, small_limits: dict[str, int]
) -> None:
    owner = await new_owner(sessions, pepper)
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\n'
    body = Endless(2 * 1024 * 1024 * 1024, head=head)
    async with open_gateway(**small_limits) as gateway:
        response = await gateway.post(
            "/v1/collections/c0ffee/documents",
            content=body.__aiter__(),
            headers={**owner, "Content-Type": "multipart/form-data; boundary=b"},
        )
    assert response.status_code == 413, response.text
    assert body.pulled <= small_limits["max_upload_bytes"] + 64 * 1024 + PIECE


async def test_a_declared_length_over_the_limit_is_refused_before_the_body(
    open_gateway: OpenGateway, sessions: db.Sessions, pepper: str, small_limits: dict[str, int]
) -> None:
    owner = await new_owner(sessions, pepper)
    body = Endless(1024 * 1024)
    async with open_gateway(**small_limits) as gateway:
        response = await gateway.post(
            "/v1/collections",
            content=body.__aiter__(),
            headers={**owner, "Content-Type": "application/json", "Content-Length": str(1024 * 1024)},
        )
    assert response.status_code == 413
    assert body.pulled == 0


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/v1/collections/{id}"),
        ("GET", "/v1/documents/{id}"),
        ("GET", "/v1/documents/{id}/sections"),
        ("DELETE", "/v1/documents/{id}"),
        ("GET", "/v1/conversations/{id}"),
        ("GET", "/v1/conversations/{id}/turns/{id}/events"),
        ("GET", "/v1/users/{id}"),
        ("DELETE", "/v1/api-keys/{id}"),
    ],
)
async def test_an_over_long_id_is_404(
    gateway: httpx.AsyncClient, sessions: db.Sessions, pepper: str, method: str, path: str
) -> None:
    owner = await new_owner(sessions, pepper)
    response = await gateway.request(method, path.replace("{id}", "x" * 10_000), headers=owner)
    assert response.status_code == 404, response.text
    assert "metadata" not in response.text
    just_over = await gateway.request(method, path.replace("{id}", "x" * (MAX_ID_CHARS + 1)), headers=owner)
    assert just_over.status_code == 404


async def test_an_over_long_id_in_a_body_or_query_is_422(
    gateway: httpx.AsyncClient, sessions: db.Sessions, pepper: str
) -> None:
    owner = await new_owner(sessions, pepper)
    chat = await gateway.post("/v1/chat", json={"message": "hi", "conversation_id": "x" * 10_000}, headers=owner)
    assert chat.status_code == 422
    listed = await gateway.get("/v1/conversations", params={"user_id": "x" * 10_000}, headers=owner)
    assert listed.status_code == 422
