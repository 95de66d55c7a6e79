"""Signing in with the company's identity provider (sign_in.py): what the web app needs to send a
person there, and the exchange of the code it brings back for a bearer token.

The two routes are public (the front door lets them in without a credential: they are how one
gets a credential); the exchange's body is bounded like any other."""

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from parley.gateway import store
from parley.gateway.api.deps import Deps, Services
from parley.gateway.errors import ApiError
from parley.gateway.schemas.people import UserOut
from parley.gateway.sign_in import SignIn

router = APIRouter(prefix="/v1/sso", tags=["sign-in"])

# RFC 7636 §4.1: 43 to 128 unreserved characters.
Verifier = Annotated[str, StringConstraints(min_length=43, max_length=128, pattern=r"^[A-Za-z0-9._~-]+$")]
Opaque = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$")]
RedirectUri = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^https?://[\x21-\x7e]+$")]


class SignInConfig(BaseModel):
    enabled: bool = Field(description="false: no identity provider is configured; sign in with an API key")
    name: str | None = Field(default=None, description='how the provider is named on the button ("Sign in with …")')
    authorization_endpoint: str | None = None
    client_id: str | None = None
    scopes: str | None = Field(default=None, description="space-separated, `openid` among them")
    redirect_uri: str | None = Field(
        default=None, description="the redirect URI registered with the provider; null: the app's own address (`/`)"
    )


class ExchangeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "SplxlOBeZQQYbYS6WxSbIA",
                    "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                    "redirect_uri": "https://parley.example.com/",
                    "nonce": "n-0S6_WzA2Mj",
                }
            ]
        },
    )
    code: Opaque
    code_verifier: Verifier
    redirect_uri: RedirectUri
    nonce: Opaque


class SignedInOut(BaseModel):
    token: str = Field(description="the bearer for every request, like an API key; keep it in the tab only")
    token_type: str = "Bearer"
    expires_at: int = Field(description="when the token stops working, seconds since the epoch: sign in again then")
    tenant_id: str
    user: UserOut


def _sign_in(request: Request) -> SignIn | None:
    found: SignIn | None = request.app.state.sign_in
    return found


@router.get("/config")
async def sign_in_config(request: Request) -> SignInConfig:
    """Whether the web app can offer "Sign in with …", and what it needs to send a person to the
    identity provider (authorization-code flow with PKCE S256, state and nonce). Public."""
    sign_in = _sign_in(request)
    if sign_in is None:
        return SignInConfig(enabled=False)
    provider = await sign_in.provider()
    return SignInConfig(
        enabled=True,
        name=provider.name,
        authorization_endpoint=provider.authorization_endpoint,
        client_id=provider.client_id,
        scopes=provider.scopes,
        redirect_uri=provider.redirect_uri or None,
    )


@router.post("/token")
async def exchange_code(body: ExchangeIn, request: Request, services: Deps) -> SignedInOut:
    """The code the identity provider sent the browser back with, exchanged (server-side, with the
    PKCE verifier) for a bearer token the gateway accepts. The person is created on first sight.
    Public. Refused: a code the provider refuses (400 `sign_in_refused`), an id_token that does
    not verify or is not for this nonce (401), claims naming no tenant or role of Parley (403), no
    provider configured (404), the provider unreachable (503)."""
    sign_in = _sign_in(request)
    if sign_in is None:
        raise ApiError(404, "not_found", "single sign-on is not configured on this gateway")
    await _admit(request, services)
    async with services.sessions.begin() as session:
        signed_in = await sign_in.exchange(
            session,
            code=body.code,
            code_verifier=body.code_verifier,
            redirect_uri=body.redirect_uri,
            nonce=body.nonce,
        )
    who = signed_in.principal
    async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
        user = await store.get_user(session=session, tenant_id=who.tenant_id, user_id=who.user_id)
    if user is None:
        raise ApiError(404, "not_found", "the user is gone")
    user_out = UserOut.model_validate(user)
    return SignedInOut(token=signed_in.token, expires_at=signed_in.expires_at, tenant_id=who.tenant_id, user=user_out)


async def _admit(request: Request, services: Services) -> None:
    """A public route that makes the gateway call the identity provider is limited per client
    address (behind a proxy, the proxy's: set the limit for it, or 0 to leave it to the proxy)."""
    limit = services.settings.rate_sign_ins_per_minute
    if limit <= 0:
        return
    address = request.client.host if request.client else "unknown"
    async with services.sessions.begin() as session:
        verdict = await services.limiter.admit_address(session, address, what="sign-ins from this address", limit=limit)
    if not verdict.allowed:
        raise verdict.refusal()
