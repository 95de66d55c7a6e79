"""Signing in to the web app with the company's identity provider: the OAuth 2.0
authorization-code flow with PKCE (S256), state and an OpenID Connect nonce, the web app being a
public client (a confidential one when the provider demands a client secret).

The browser makes the verifier, its challenge, the state and the nonce (WebCrypto), keeps them
in its tab, and goes to the provider's authorization endpoint (`config`). The provider sends it
back to the app with `?code&state`; the browser checks the state and hands the code, its
verifier and its nonce to the gateway (`exchange`), which posts them to the provider's token
endpoint itself. So the page talks to the gateway only (its CSP stays "self", no CORS), and a
client secret, when there is one, never reaches a browser.

What comes back is checked before it is handed over: the id_token is the provider's, for this
client and this nonce; the bearer the browser will use is whichever of the provider's tokens the
gateway accepts on every request (sso.py) — the access token when it is a JWT for
`PARLEY_SSO_AUDIENCE` (what providers issue for an API), else the id_token (audience = client
id) — and its claims must name a tenant and a role of Parley. The person is created on first
sight, as on any request with the token.
"""

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from parley.gateway.access import Principal
from parley.gateway.errors import ApiError
from parley.gateway.sso import SingleSignOn

log = logging.getLogger(__name__)

_TIMEOUT_SECONDS = 10.0
_DISCOVERY_SECONDS = 300.0
_MAX_ANSWER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Provider:
    """What the browser needs to send a person to the provider."""

    name: str
    authorization_endpoint: str
    client_id: str
    scopes: str
    redirect_uri: str  # empty: the app's own address, as the browser sees it


@dataclass(frozen=True, slots=True)
class SignedIn:
    token: str
    expires_at: int  # the token's `exp`, seconds since the epoch
    principal: Principal
    claims: dict[str, Any]


def _unavailable(what: str) -> ApiError:
    message = f"the identity provider could not be reached ({what}); try again"
    return ApiError(503, "unavailable", message, headers={"Retry-After": "5"})


class SignIn:
    def __init__(
        self,
        sso: SingleSignOn,
        *,
        client_id: str,
        client_secret: str = "",
        scopes: str = "openid profile email",
        name: str = "company SSO",
        redirect_uri: str = "",
    ) -> None:
        self.sso = sso
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = scopes
        self.name = name
        self.redirect_uri = redirect_uri
        self._discovery: dict[str, Any] = {}
        self._discovered_at = float("-inf")

    async def _get_json(self, client: httpx.AsyncClient, url: str) -> Any:
        response = await client.get(url)
        response.raise_for_status()
        return response.json()

    async def discovery(self) -> dict[str, Any]:
        """The issuer's OpenID Connect discovery document, kept a few minutes."""
        if time.monotonic() - self._discovered_at < _DISCOVERY_SECONDS:
            return self._discovery
        url = self.sso.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT_SECONDS) as client:
                found = await self._get_json(client, url)
        except (httpx.HTTPError, ValueError):
            log.warning("could not read the identity provider's discovery document", exc_info=True)
            raise _unavailable("its discovery document") from None
        if not isinstance(found, dict) or not found.get("authorization_endpoint") or not found.get("token_endpoint"):
            log.warning("the discovery document has no authorization or token endpoint")
            raise _unavailable("its discovery document names no authorization or token endpoint")
        self._discovery, self._discovered_at = found, time.monotonic()
        return found

    async def provider(self) -> Provider:
        found = await self.discovery()
        return Provider(
            name=self.name,
            authorization_endpoint=str(found["authorization_endpoint"]),
            client_id=self.client_id,
            scopes=self.scopes,
            redirect_uri=self.redirect_uri,
        )

    def _client_authentication(self, form: dict[str, str]) -> dict[str, str]:
        """Headers for a confidential client (the secret as HTTP Basic, the spec's default, or
        in the form when the provider says it takes only that); none for a public client."""
        if not self._client_secret:
            return {}
        methods = self._discovery.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if "client_secret_basic" not in methods and "client_secret_post" in methods:
            form["client_secret"] = self._client_secret
            return {}
        pair = f"{self.client_id}:{self._client_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    async def _tokens(self, *, code: str, code_verifier: str, redirect_uri: str) -> dict[str, Any]:
        endpoint = str((await self.discovery())["token_endpoint"])
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": code_verifier,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
        }
        headers = {"Accept": "application/json", **self._client_authentication(form)}
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT_SECONDS) as client:
                response = await client.post(endpoint, data=form, headers=headers)
        except httpx.HTTPError:
            log.warning("the identity provider's token endpoint is unreachable", exc_info=True)
            raise _unavailable("its token endpoint") from None
        try:
            answer = response.json() if len(response.content) <= _MAX_ANSWER_BYTES else None
        except ValueError:
            answer = None
        if response.status_code in (400, 401) and isinstance(answer, dict) and answer.get("error"):
            # The provider's own words (RFC 6749 §5.2): a used or made-up code, a verifier that
            # is not the challenge's, a redirect URI or client it does not know.
            error = str(answer["error"])[:80]
            description = str(answer.get("error_description") or "")[:300]
            raise ApiError(
                400,
                "sign_in_refused",
                f"the identity provider refused the sign-in ({error}{': ' + description if description else ''}); "
                "sign in again",
            )
        if response.status_code != 200 or not isinstance(answer, dict):
            log.warning("the token endpoint answered %d", response.status_code)
            raise _unavailable(f"its token endpoint answered {response.status_code}")
        return answer

    async def exchange(
        self, session: AsyncSession, *, code: str, code_verifier: str, redirect_uri: str, nonce: str
    ) -> SignedIn:
        if self.redirect_uri and redirect_uri != self.redirect_uri:
            raise ApiError(400, "sign_in_refused", "redirect_uri is not the one this gateway is configured with")
        tokens = await self._tokens(code=code, code_verifier=code_verifier, redirect_uri=redirect_uri)
        id_token = str(tokens.get("id_token") or "")
        identity = await self.sso.claims(id_token, audience=self.client_id) if id_token else None
        if identity is None:
            raise ApiError(401, "unauthenticated", "the identity provider's id_token did not verify; sign in again")
        if identity.get("nonce") != nonce:
            raise ApiError(401, "unauthenticated", "the id_token is not for this sign-in (nonce); sign in again")
        token, claims = await self._bearer(tokens, id_token, identity)
        refusal = self.sso.refusal(claims)
        if refusal is not None:
            raise ApiError(403, "forbidden", refusal)
        found = await self.sso.holder(session, claims)  # `claims` are the verified token's
        if found is None:
            tenant = claims.get(self.sso.config.tenant_claim) or self.sso.config.default_tenant
            raise ApiError(403, "forbidden", f"Parley has no tenant named {str(tenant)[:80]!r}: ask your administrator")
        return SignedIn(token=token, expires_at=int(claims["exp"]), principal=found[0], claims=claims)

    async def _bearer(
        self, tokens: dict[str, Any], id_token: str, identity: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        access_token = str(tokens.get("access_token") or "")
        if access_token.count(".") == 2:
            claims = await self.sso.claims(access_token)
            if claims is not None:
                return access_token, claims
        if self.sso.config.audience == self.client_id:
            return id_token, identity
        raise ApiError(
            401,
            "unauthenticated",
            "the identity provider issued no token for this gateway's audience (PARLEY_SSO_AUDIENCE): "
            "set it to the client id, or have the provider issue access tokens for it",
        )
