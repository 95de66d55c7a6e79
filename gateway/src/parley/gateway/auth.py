"""API keys: how they are made, stored, checked, and how the first one comes to exist.

A key is `pk_` + 32 random bytes (URL-safe base64). It is shown once, when it is made; the
database keeps only HMAC-SHA256(pepper, key) and the first `PREFIX_CHARS` characters in clear,
so a person can tell their keys apart and a leaked table lets nobody in. Every request looks its
key up again, so a revocation or an expiry takes effect at once on every replica: nothing is
cached.
"""

import hashlib
import hmac
import logging
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from parley.gateway import store
from parley.gateway.access import SCOPES, Principal
from parley.gateway.config import Settings
from parley.gateway.sso import SingleSignOn, SsoConfig, looks_like_jwt
from parley.kit.db import Sessions

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
KEY_PREFIX = "pk_"
PREFIX_CHARS = 12
# last_used_at is written at most this often per key.
TOUCH_EVERY_SECONDS = 60


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def visible_prefix(key: str) -> str:
    return key[:PREFIX_CHARS]


def hash_api_key(key: str, *, pepper: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


async def key_holder(session: AsyncSession, key: str, *, pepper: str) -> store.KeyMatch | None:
    """The live key's holder and their tenant's limits, in the caller's transaction."""
    # Looked up by its keyed hash: the database never compares secrets, so timing reveals nothing.
    found = await store.key_by_hash(session=session, key_hash=hash_api_key(key, pepper=pepper))
    if found is None:
        return None
    assert found.principal.api_key_id is not None
    stale = datetime.now(UTC) - timedelta(seconds=TOUCH_EVERY_SECONDS)
    if found.last_used_at is None or found.last_used_at < stale:
        await store.touch_key(session=session, key_id=found.principal.api_key_id, every_seconds=TOUCH_EVERY_SECONDS)
    return found


class Authenticator:
    """Turns a presented credential into its holder and their tenant's limits: an API key, or
    (when single sign-on is configured) an identity provider's JWT (sso.py)."""

    def __init__(self, *, pepper: str, sso: SingleSignOn | None = None) -> None:
        self._pepper = pepper
        self._sso = sso

    @classmethod
    def from_settings(cls, settings: Settings) -> "Authenticator":
        sso = None
        if settings.sso_issuer:
            sso = SingleSignOn(
                SsoConfig(
                    issuer=settings.sso_issuer,
                    audience=settings.sso_audience,
                    algorithms=tuple(name.strip() for name in settings.sso_algorithms.split(",") if name.strip()),
                    jwks_url=settings.sso_jwks_url,
                    tenant_claim=settings.sso_tenant_claim,
                    default_tenant=settings.sso_default_tenant,
                    role_claim=settings.sso_role_claim,
                    default_role=settings.sso_default_role,
                    leeway_seconds=settings.sso_leeway_seconds,
                    jwks_cache_seconds=settings.sso_jwks_cache_seconds,
                )
            )
        return cls(pepper=settings.api_key_pepper.get_secret_value(), sso=sso)

    @property
    def sso(self) -> SingleSignOn | None:
        return self._sso

    async def authenticate(self, session: AsyncSession, credential: str) -> tuple[Principal, store.TenantLimits] | None:
        if self._sso is not None and looks_like_jwt(credential):
            return await self._sso.authenticate(session, credential)
        found = await key_holder(session, credential, pepper=self._pepper)
        return None if found is None else (found.principal, found.limits)


async def authenticate(sessions: Sessions, key: str, *, pepper: str) -> Principal | None:
    async with sessions.begin() as session:
        found = await key_holder(session, key, pepper=pepper)
        return None if found is None else found.principal


async def bootstrap(sessions: Sessions, key: str, *, pepper: str) -> bool:
    """On a fresh install, create the default tenant with its owner holding `key`; that owner is
    also the installation's owner (may create tenants). True if it did."""
    async with sessions.begin() as session:
        await store.lock_bootstrap(session=session)
        if await store.any_api_key(session=session):
            return False
        tenant = await store.create_tenant(session=session, name=DEFAULT_TENANT)
        owner = await store.create_user(
            session=session, tenant_id=tenant.id, name="owner", role="owner", installation_owner=True
        )
        await store.create_key(
            session=session,
            tenant_id=tenant.id,
            user_id=owner.id,
            name="bootstrap",
            key_hash=hash_api_key(key, pepper=pepper),
            prefix=visible_prefix(key),
            scopes=list(SCOPES),
            expires_at=None,
        )
    log.info("created the default tenant and its owner's API key")
    return True
