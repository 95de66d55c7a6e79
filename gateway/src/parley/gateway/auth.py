"""API keys: how they are stored, checked, and how the first one comes to exist."""

import hashlib
import hmac
import logging

from parley.gateway import store
from parley.kit.db import Sessions

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"


def hash_api_key(key: str, *, pepper: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


async def authenticate(sessions: Sessions, key: str, *, pepper: str) -> store.Principal | None:
    # Looked up by its keyed hash: the database never compares secrets, so timing reveals nothing.
    async with sessions() as session:
        return await store.principal_for_key_hash(session=session, key_hash=hash_api_key(key, pepper=pepper))


async def bootstrap(sessions: Sessions, key: str, *, pepper: str) -> bool:
    """On a fresh install, create the default tenant with an admin holding `key`. True if it did."""
    async with sessions.begin() as session:
        await store.lock_bootstrap(session=session)
        if await store.any_api_key(session=session):
            return False
        await store.create_tenant_with_admin(
            session=session, tenant_name=DEFAULT_TENANT, key_hash=hash_api_key(key, pepper=pepper)
        )
    log.info("created the default tenant and its admin API key")
    return True
