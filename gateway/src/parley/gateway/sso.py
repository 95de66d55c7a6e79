"""Single sign-on: a bearer JWT from the company's identity provider instead of an API key.

A token is accepted when, in this order:
- its header names an algorithm from `PARLEY_SSO_ALGORITHMS` (asymmetric only: `none` and every
  HMAC algorithm are refused at settings time and again here, so a token signed with the
  provider's *public* key as an HMAC secret — the HS/RS confusion — never reaches a verifier);
- its `kid` is a key of the provider's JWKS (`PARLEY_SSO_JWKS_URL`, or the `jwks_uri` of the
  issuer's OIDC discovery document), a key of the algorithm's family;
- its signature verifies, and `iss`, `aud`, `exp`, `nbf` (with `PARLEY_SSO_LEEWAY_SECONDS`) and
  `sub` hold.

Claims map to Parley's people: the tenant is the one *named* by `PARLEY_SSO_TENANT_CLAIM` (or
`PARLEY_SSO_DEFAULT_TENANT`; a tenant is never created by a token: an operator makes it), the role
is `PARLEY_SSO_ROLE_CLAIM` (or `PARLEY_SSO_DEFAULT_ROLE`; empty: the claim is required), and the
user is the tenant's user with that `sub`, created on first sight; the role follows the provider
on every request. An SSO user holds every scope their role may (scopes narrow API keys, not people).

The JWKS is fetched off the event loop with a deadline, kept `PARLEY_SSO_JWKS_CACHE_SECONDS`, and
fetched again early for an unknown `kid` (key rotation) at most once per `_REFETCH_SECONDS`, so a
stream of made-up kids cannot turn the gateway against the provider.
"""

import asyncio
import json
import logging
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from parley.gateway import store
from parley.gateway.access import ROLE_SCOPES, ROLES, Principal, Role

log = logging.getLogger(__name__)

# Never accepted, whatever the settings say.
REFUSED_ALGORITHMS = frozenset({"none", "HS256", "HS384", "HS512"})
_REFETCH_SECONDS = 30.0
_FETCH_TIMEOUT_SECONDS = 5.0


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2 and not credential.startswith("pk_")


@dataclass(frozen=True, slots=True)
class SsoConfig:
    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    jwks_url: str = ""
    tenant_claim: str = "parley_tenant"
    default_tenant: str = ""
    role_claim: str = "parley_role"
    default_role: str = "member"
    name_claim: str = "name"
    leeway_seconds: float = 30.0
    jwks_cache_seconds: float = 300.0

    def __post_init__(self) -> None:
        refused = set(self.algorithms) & REFUSED_ALGORITHMS
        if refused or not self.algorithms:
            raise ValueError(f"PARLEY_SSO_ALGORITHMS must be asymmetric algorithms only (refused: {sorted(refused)})")
        if not self.issuer or not self.audience:
            raise ValueError("single sign-on needs PARLEY_SSO_ISSUER and PARLEY_SSO_AUDIENCE")
        if self.default_role and self.default_role not in ROLES:
            roles = ", ".join(ROLES)
            raise ValueError(f"PARLEY_SSO_DEFAULT_ROLE must be one of {roles}, or empty (the claim required)")


def _fetch_json(url: str) -> Any:
    # Blocking: called in a worker thread only.
    if not url.startswith(("https://", "http://")):
        raise ValueError("the JWKS and discovery URLs must be http(s)")
    with urllib.request.urlopen(url, timeout=_FETCH_TIMEOUT_SECONDS) as response:
        return json.loads(response.read(1024 * 1024))


class Jwks:
    """The provider's signing keys by `kid`, fetched when stale or when a new kid appears."""

    def __init__(self, config: SsoConfig) -> None:
        self._config = config
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _url(self) -> str:
        if self._config.jwks_url:
            return self._config.jwks_url
        discovery = self._config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await asyncio.to_thread(_fetch_json, discovery)
        return str(document["jwks_uri"])

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        found = await asyncio.to_thread(_fetch_json, await self._url())
        keys: dict[str, jwt.PyJWK] = {}
        for entry in found.get("keys", []):
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type or algorithm this gateway does not use
            keys[str(entry.get("kid", ""))] = key
        self._keys = keys

    async def key(self, kid: str) -> jwt.PyJWK | None:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if age > self._config.jwks_cache_seconds or (kid not in self._keys and age > _REFETCH_SECONDS):
                try:
                    await self._refresh()
                except Exception:  # the provider unreachable: keep the keys we had
                    log.warning("could not fetch the identity provider's keys", exc_info=True)
            return self._keys.get(kid)


class SingleSignOn:
    def __init__(self, config: SsoConfig) -> None:
        self.config = config
        self._jwks = Jwks(config)

    async def claims(self, token: str, *, audience: str = "") -> dict[str, Any] | None:
        """The token's claims if it is the provider's, current and for us (or for `audience`: an
        id_token is for the client that asked for it); None otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        algorithm = str(header.get("alg", ""))
        if algorithm in REFUSED_ALGORITHMS or algorithm not in self.config.algorithms:
            return None
        key = await self._jwks.key(str(header.get("kid", "")))
        # The key must be for this very algorithm (a JWK without `alg` is its family's default).
        if key is None or key.algorithm_name != algorithm:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=audience or self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"], "verify_nbf": True},
            )
        except jwt.PyJWTError as error:
            log.info("refused a token: %s", error)
            return None
        return claims

    def refusal(self, claims: dict[str, Any]) -> str | None:
        """Why these claims name no Parley person (said to whoever signs in), or None."""
        tenant_claim, role_claim = self.config.tenant_claim, self.config.role_claim
        if not (claims.get(tenant_claim) or self.config.default_tenant):
            return (
                f"your sign-in carries no `{tenant_claim}` claim naming your Parley tenant (and no default "
                "tenant is set): ask your administrator to add it in the identity provider"
            )
        role = claims.get(role_claim) or self.config.default_role
        if not role:
            return f"your sign-in carries no `{role_claim}` claim giving your Parley role: ask your administrator"
        if role not in ROLES:
            return f"your sign-in's `{role_claim}` claim is {str(role)[:40]!r}, not one of {', '.join(ROLES)}"
        return None

    async def authenticate(self, session: AsyncSession, token: str) -> tuple[Principal, store.TenantLimits] | None:
        claims = await self.claims(token)
        return None if claims is None else await self.holder(session, claims)

    async def holder(
        self, session: AsyncSession, claims: dict[str, Any]
    ) -> tuple[Principal, store.TenantLimits] | None:
        """The person verified claims name (created on first sight) and their tenant's limits."""
        tenant_name = str(claims.get(self.config.tenant_claim) or self.config.default_tenant)
        role = str(claims.get(self.config.role_claim) or self.config.default_role)
        if not tenant_name or role not in ROLES:
            return None
        tenant = await store.tenant_named(session=session, name=tenant_name)
        if tenant is None:
            return None
        subject = str(claims["sub"])
        name = str(claims.get(self.config.name_claim) or claims.get("email") or subject)[:200]
        user = await store.sso_user(session=session, tenant_id=tenant.id, subject=subject)
        if user is None or user.role != role or user.name != name:
            user = await store.upsert_sso_user(
                session=session,
                tenant_id=tenant.id,
                subject=subject,
                name=name,
                # Not kept: an email is unique in a tenant, and a person invited by email who
                # then signs in would collide; the provider's `sub` is the handle.
                email=None,
                role=role,
            )
        principal = Principal(tenant_id=tenant.id, user_id=user.id, role=user.role, scopes=ROLE_SCOPES[Role[user.role]])
        return principal, store.limits_of(tenant)
