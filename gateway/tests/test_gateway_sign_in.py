"""Signing in with the identity provider (routes/sign_in.py) against a fake OpenID Connect provider
served over HTTP by the test (tests/fakes/identity_provider.py): the public config, and the code
exchanged for a bearer the gateway then accepts — or refused, each way, in the one error shape."""

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio

from parley.gateway import store
from parley.kit import db
from tests.fakes.identity_provider import FakeIdentityProvider

from .conftest import OpenGateway

REDIRECT = "http://parley.test/"
CLIENT = "parley-web"


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdentityProvider]:
    with FakeIdentityProvider(client_id=CLIENT) as provider:
        yield provider


@pytest_asyncio.fixture
async def tenant(sessions: db.Sessions) -> str:
    name = f"acme-{uuid.uuid4().hex[:6]}"
    async with sessions.begin() as session:
        await store.create_tenant(session=session, name=name)
    return name


def _settings(provider: FakeIdentityProvider, **extra: Any) -> dict[str, Any]:
    return {
        "sso_issuer": provider.issuer,
        "sso_audience": CLIENT,
        "sso_client_id": CLIENT,
        "sso_display_name": "Acme SSO",
        # Every test here exchanges codes from one address; the limit's own test sets it.
        "rate_sign_ins_per_minute": 0,
        **extra,
    }


@pytest_asyncio.fixture
async def gateway(open_gateway: OpenGateway, idp: FakeIdentityProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with open_gateway(**_settings(idp)) as client:
        yield client


def _exchange(provider: FakeIdentityProvider, *, nonce: str = "n-1", **changes: str) -> dict[str, str]:
    verifier = secrets.token_urlsafe(48)
    code = provider.issue_code(redirect_uri=REDIRECT, verifier=verifier, nonce=nonce)
    return {"code": code, "code_verifier": verifier, "redirect_uri": REDIRECT, "nonce": nonce} | changes


def _assert_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["request_id"] == response.headers["X-Request-ID"], error
    for word in words:
        assert word in error["message"], (word, error["message"])


async def test_the_config_names_the_provider_s_authorization_endpoint_without_a_credential(
    gateway: httpx.AsyncClient, idp: FakeIdentityProvider
) -> None:
    config = await gateway.get("/v1/sso/config")
    assert config.status_code == 200, config.text
    assert config.json() == {
        "enabled": True,
        "name": "Acme SSO",
        "authorization_endpoint": f"{idp.issuer}/authorize",
        "client_id": CLIENT,
        "scopes": "openid profile email",
        "redirect_uri": None,
    }


async def test_without_a_provider_the_config_says_so_and_the_exchange_is_404(open_gateway: OpenGateway) -> None:
    async with open_gateway() as plain:
        assert (await plain.get("/v1/sso/config")).json()["enabled"] is False
        body = {"code": "c", "code_verifier": "v" * 43, "redirect_uri": REDIRECT, "nonce": "n"}
        _assert_error(await plain.post("/v1/sso/token", json=body), 404, "not_found", "not configured")


async def test_a_code_becomes_a_bearer_for_its_person_created_on_first_sight(
    gateway: httpx.AsyncClient, idp: FakeIdentityProvider, tenant: str
) -> None:
    subject = f"grace-{uuid.uuid4().hex[:6]}"
    idp.person = {"sub": subject, "name": "Grace", "parley_tenant": tenant, "parley_role": "admin"}
    signed_in = await gateway.post("/v1/sso/token", json=_exchange(idp))
    assert signed_in.status_code == 200, signed_in.text
    body = signed_in.json()
    assert body["user"]["name"] == "Grace" and body["user"]["role"] == "admin" and body["token_type"] == "Bearer"
    # The provider was asked as a public client: the verifier, this client, this redirect URI.
    asked = idp.exchanges[-1]
    assert asked["client_id"] == CLIENT and asked["redirect_uri"] == REDIRECT and "client_secret" not in asked
    me = await gateway.get("/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200, me.text
    assert me.json()["user"]["id"] == body["user"]["id"] and me.json()["tenant_id"] == body["tenant_id"]
    assert body["expires_at"] > 0


async def test_a_code_the_provider_does_not_know_is_refused_with_its_reason(
    gateway: httpx.AsyncClient, idp: FakeIdentityProvider, tenant: str
) -> None:
    idp.person = {"sub": "x", "parley_tenant": tenant}
    refused = await gateway.post("/v1/sso/token", json=_exchange(idp, code="made-up-code"))
    _assert_error(refused, 400, "sign_in_refused", "invalid_grant", "sign in again")
    # A code is good once.
    body = _exchange(idp)
    assert (await gateway.post("/v1/sso/token", json=body)).status_code == 200
    _assert_error(await gateway.post("/v1/sso/token", json=body), 400, "sign_in_refused", "invalid_grant")


async def test_a_verifier_that_is_not_the_challenge_s_is_refused(
    gateway: httpx.AsyncClient, idp: FakeIdentityProvider, tenant: str
) -> None:
    idp.person = {"sub": "x", "parley_tenant": tenant}
    refused = await gateway.post("/v1/sso/token", json=_exchange(idp, code_verifier=secrets.token_urlsafe(48)))
    _assert_error(refused, 400, "sign_in_refused", "PKCE verification failed")


async def test_a_missing_or_malformed_verifier_is_422_before_the_provider_is_asked(
    gateway: httpx.AsyncClient, idp: FakeIdentityProvider
) -> None:
    asked = len(idp.exchanges)
    body = _exchange(idp)
    del body["code_verifier"]
    missing = await gateway.post("/v1/sso/token", json=body)
    _assert_error(missing, 422, "invalid_request")
    assert [detail["field"] for detail in missing.json()["error"]["details"]] == ["code_verifier"]
    short = await gateway.post("/v1/sso/token", json=_exchange(idp, code_verifier="too-short"))
    _assert_error(short, 422, "invalid_request")
    assert len(idp.exchanges) == asked


async def test_an_id_token_for_another_sign_in_is_refused(
    gateway: httpx.AsyncClient, idp: FakeIdentityProvider, tenant: str
) -> None:
    idp.person = {"sub": "x", "parley_tenant": tenant}
    body = _exchange(idp, nonce="the-one-the-provider-saw")
    refused = await gateway.post("/v1/sso/token", json=body | {"nonce": "another-tab-s-nonce"})
    _assert_error(refused, 401, "unauthenticated", "nonce")


@pytest.mark.parametrize(
    ("person", "words"),
    [
        ({"sub": "x"}, ("no `parley_tenant` claim",)),
        ({"sub": "x", "parley_tenant": "{tenant}", "parley_role": "emperor"}, ("parley_role", "not one of")),
        ({"sub": "x", "parley_tenant": "no-such-team"}, ("no tenant named 'no-such-team'",)),
    ],
)
async def test_claims_that_name_no_tenant_or_role_of_parley_are_refused_clearly(
    gateway: httpx.AsyncClient, idp: FakeIdentityProvider, tenant: str, person: dict[str, str], words: tuple[str]
) -> None:
    idp.person = {name: value.replace("{tenant}", tenant) for name, value in person.items()}
    _assert_error(await gateway.post("/v1/sso/token", json=_exchange(idp)), 403, "forbidden", *words)


async def test_a_required_role_claim_that_is_missing_is_refused(
    open_gateway: OpenGateway, idp: FakeIdentityProvider, tenant: str
) -> None:
    async with open_gateway(**_settings(idp, sso_default_role="")) as strict:
        idp.person = {"sub": "x", "parley_tenant": tenant}
        refused = await strict.post("/v1/sso/token", json=_exchange(idp))
        _assert_error(refused, 403, "forbidden", "no `parley_role` claim")


async def test_an_access_token_for_the_api_is_the_bearer_when_the_provider_issues_one(
    open_gateway: OpenGateway, tenant: str
) -> None:
    with FakeIdentityProvider(client_id=CLIENT, client_secret="s3cret", access_token_audience="parley-api") as idp:
        async with open_gateway(**_settings(idp, sso_audience="parley-api", sso_client_secret="s3cret")) as gateway:
            idp.person = {"sub": "ops", "parley_tenant": tenant}
            signed_in = await gateway.post("/v1/sso/token", json=_exchange(idp))
            assert signed_in.status_code == 200, signed_in.text
            token = signed_in.json()["token"]
            # The fake refuses a confidential client without its secret (HTTP Basic): it was sent.
            assert jwt.decode(token, options={"verify_signature": False})["aud"] == "parley-api"
            me = await gateway.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text


async def test_the_provider_down_is_a_503_saying_so(open_gateway: OpenGateway, tenant: str) -> None:
    with FakeIdentityProvider(client_id=CLIENT) as idp:
        async with open_gateway(**_settings(idp)) as gateway:
            assert (await gateway.get("/v1/sso/config")).status_code == 200  # its endpoints known
            idp.person = {"sub": "x", "parley_tenant": tenant}
            body = _exchange(idp)
            idp.stop()
            down = await gateway.post("/v1/sso/token", json=body)
            _assert_error(down, 503, "unavailable", "identity provider could not be reached", "token endpoint")
            assert down.headers["Retry-After"] == "5"
        # Down from the start: the config cannot name its endpoints either.
        async with open_gateway(**_settings(idp)) as gateway:
            _assert_error(await gateway.get("/v1/sso/config"), 503, "unavailable", "discovery document")


async def test_code_exchanges_are_limited_per_client_address(
    open_gateway: OpenGateway, idp: FakeIdentityProvider, tenant: str
) -> None:
    """The exchange is public and each one asks the identity provider: an address past its
    minute's allowance is refused before the provider is asked."""
    idp.person = {"sub": "x", "parley_tenant": tenant}
    async with open_gateway(**_settings(idp, rate_sign_ins_per_minute=2)) as gateway:
        answers = [await gateway.post("/v1/sso/token", json=_exchange(idp)) for _ in range(3)]
    assert [answer.status_code for answer in answers[:2]] == [200, 200], answers[0].text
    _assert_error(answers[2], 429, "rate_limited", "sign-ins", "2 a minute")
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert answers[2].headers["RateLimit-Limit"] == "2" and answers[2].headers["RateLimit-Remaining"] == "0"
