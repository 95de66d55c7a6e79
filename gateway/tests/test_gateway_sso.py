"""Single sign-on with keys the test makes and a JWKS the test serves over HTTP: a good token
lets its person in (created on first sight, role from the claim); an expired, not-yet-valid,
wrong-audience, wrong-issuer, `alg: none`, HS/RS-confused, unknown-key or unknown-tenant token
is a 401."""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from parley.gateway import store
from parley.gateway.sso import SsoConfig
from parley.kit import db

from .conftest import OpenGateway

ISSUER = "https://login.example.test"
AUDIENCE = "parley-test"


class Provider:
    """An identity provider's part the gateway sees: a JWKS over HTTP, and tokens it signs."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "key-1"
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}
        self.fetches = 0

    def token(self, *, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1", "iat": now, "exp": now + 300, **claims}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": self.kid, **(headers or {})})

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[Provider, str]]:
    served = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.fetches += 1
            body = json.dumps(served.jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_port}/jwks.json"
    finally:
        server.shutdown()


@pytest_asyncio.fixture
async def sso(
    open_gateway: OpenGateway, provider: tuple[Provider, str], sessions: db.Sessions
) -> AsyncIterator[tuple[httpx.AsyncClient, Provider, str]]:
    served, jwks_url = provider
    name = f"acme-{uuid.uuid4().hex[:6]}"
    async with sessions.begin() as session:
        await store.create_tenant(session=session, name=name)
    async with open_gateway(sso_issuer=ISSUER, sso_audience=AUDIENCE, sso_jwks_url=jwks_url) as gateway:
        yield gateway, served, name


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_good_token_lets_its_person_in_created_on_first_sight(
    sso: tuple[httpx.AsyncClient, Provider, str],
) -> None:
    gateway, provider, tenant = sso
    subject = f"sub-{uuid.uuid4().hex[:6]}"
    token = provider.token(sub=subject, parley_tenant=tenant, parley_role="admin", name="Grace")
    first = await gateway.get("/v1/me", headers=bearer(token))
    assert first.status_code == 200, first.text
    assert first.json()["user"]["role"] == "admin" and first.json()["user"]["name"] == "Grace"
    assert first.json()["api_key_id"] is None
    again = await gateway.get("/v1/me", headers=bearer(provider.token(sub=subject, parley_tenant=tenant)))
    assert again.json()["user"]["id"] == first.json()["user"]["id"]
    # The role follows the provider: no claim now, the default (member).
    assert again.json()["user"]["role"] == "member"
    assert (await gateway.get("/v1/users", headers=bearer(token))).status_code == 200


@pytest.mark.parametrize(
    "case",
    ["expired", "not_yet_valid", "wrong_audience", "wrong_issuer", "no_subject", "unknown_tenant", "unknown_kid"],
)
async def test_a_token_that_does_not_hold_is_401(sso: tuple[httpx.AsyncClient, Provider, str], case: str) -> None:
    gateway, provider, tenant = sso
    now = int(time.time())
    claims: dict[str, Any] = {"parley_tenant": tenant}
    headers: dict[str, Any] = {}
    if case == "expired":
        claims |= {"exp": now - 3600, "iat": now - 7200}
    elif case == "not_yet_valid":
        claims |= {"nbf": now + 3600}
    elif case == "wrong_audience":
        claims |= {"aud": "someone-else"}
    elif case == "wrong_issuer":
        claims |= {"iss": "https://evil.example.test"}
    elif case == "unknown_tenant":
        claims |= {"parley_tenant": "no-such-team"}
    elif case == "unknown_kid":
        headers = {"kid": "key-that-was-never-published"}
    token = provider.token(headers=headers, **claims)
    if case == "no_subject":
        body = jwt.decode(token, options={"verify_signature": False})
        del body["sub"]
        token = jwt.encode(body, provider.key, algorithm="RS256", headers={"kid": provider.kid})
    refused = await gateway.get("/v1/me", headers=bearer(token))
    assert refused.status_code == 401, (case, refused.text)
    assert refused.json()["error"]["code"] == "unauthenticated"


async def test_alg_none_is_refused(sso: tuple[httpx.AsyncClient, Provider, str]) -> None:
    gateway, provider, tenant = sso
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 300, "parley_tenant": tenant},
        None,
        algorithm="none",
        headers={"kid": provider.kid},
    )
    assert (await gateway.get("/v1/me", headers=bearer(token))).status_code == 401


async def test_hs_rs_confusion_is_refused(sso: tuple[httpx.AsyncClient, Provider, str]) -> None:
    """The classic forgery: HS256 with the provider's public key (which anyone can fetch) as the
    HMAC secret. Built by hand, as PyJWT itself refuses to sign with a PEM as an HMAC key."""
    gateway, provider, tenant = sso

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": provider.kid}).encode())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 300, "parley_tenant": tenant}
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(provider.public_pem(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    refused = await gateway.get("/v1/me", headers=bearer(f"{header}.{payload}.{signature}"))
    assert refused.status_code == 401


def test_symmetric_algorithms_cannot_be_configured() -> None:
    for algorithms in (("HS256",), ("RS256", "none"), ()):
        with pytest.raises(ValueError, match="asymmetric"):
            SsoConfig(issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms)
