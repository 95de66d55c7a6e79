"""Who a call is for. The gateway sets it; internal services read it from gRPC metadata.

The identity crosses as plain metadata (`x-tenant-id`, `x-user-id`, `x-role`, `x-request-id`,
`x-api-key-id` — the API key that caused the call, absent for a single sign-on token or a
service's own work) plus `x-parley-identity`: `v2.<expiry>.<HMAC-SHA256>` over those values and
the expiry, with the
installation's internal secret (`PARLEY_INTERNAL_SECRET`, the same in every service). The kit's
server interceptor verifies it before any servicer runs, so a process that reaches a service's
port without the secret cannot name a tenant: a forged, altered or expired identity is
UNAUTHENTICATED. Every service signs what it sends itself (a turn outlives any token the gateway
could have given it). A signature is valid for `ttl_seconds` (default 5 minutes, for clock skew
between pods); within that it can be replayed only for the very same tenant, user, role and
request id (and key).
"""

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc

TENANT_KEY = "x-tenant-id"
USER_KEY = "x-user-id"
ROLE_KEY = "x-role"
REQUEST_KEY = "x-request-id"
API_KEY_ID_KEY = "x-api-key-id"
TRACEPARENT_KEY = "traceparent"
SIGNATURE_KEY = "x-parley-identity"
# v2: the API key id is signed too.
_VERSION = "v2"
_SIGNED = (TENANT_KEY, USER_KEY, ROLE_KEY, REQUEST_KEY, API_KEY_ID_KEY)

_request_id: ContextVar[str] = ContextVar("parley_request_id", default="")


@dataclass(frozen=True, slots=True)
class Identity:
    tenant_id: str
    user_id: str = ""
    request_id: str = ""
    traceparent: str = ""
    role: str = ""
    # The API key the call was made with, so usage is billed to it (per-key budgets); "" for a
    # single sign-on token or a service's own work.
    api_key_id: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The plain pairs, unsigned: what `Signer.metadata` signs and sends."""
        pairs = [
            (TENANT_KEY, self.tenant_id),
            (USER_KEY, self.user_id),
            (ROLE_KEY, self.role),
            (REQUEST_KEY, self.request_id),
            (API_KEY_ID_KEY, self.api_key_id),
        ]
        if self.traceparent:
            pairs.append((TRACEPARENT_KEY, self.traceparent))
        return tuple((key, value) for key, value in pairs if value)


class Signer:
    """Signs the identity a service sends and verifies the one it receives (one shared secret)."""

    def __init__(self, secret: str, *, ttl_seconds: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("the internal secret must not be empty")
        self._key = secret.encode()
        self._ttl = ttl_seconds
        self._clock = clock

    def _mac(self, values: Mapping[str, str], expiry: int) -> str:
        # Newline-separated: none of the values may hold one (gRPC metadata values cannot).
        signed = "\n".join([_VERSION, *(values.get(key, "") for key in _SIGNED), str(expiry)])
        digest = hmac.new(self._key, signed.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def metadata(self, identity: Identity) -> tuple[tuple[str, str], ...]:
        pairs = identity.metadata()
        expiry = int(self._clock() + self._ttl)
        return (*pairs, (SIGNATURE_KEY, f"{_VERSION}.{expiry}.{self._mac(dict(pairs), expiry)}"))

    def refusal(self, metadata: Mapping[str, Any]) -> str | None:
        """Why the call's identity is not to be trusted, or None when it is signed and current."""
        values = {key: value for key, value in metadata.items() if isinstance(value, str)}
        if not values.get(TENANT_KEY):
            return f"the call has no {TENANT_KEY} metadata (set by the gateway)"
        version, _, rest = values.get(SIGNATURE_KEY, "").partition(".")
        expiry_text, _, mac = rest.partition(".")
        if version != _VERSION or not expiry_text.isdigit() or not mac:
            return "the call's identity is not signed"
        if not hmac.compare_digest(mac, self._mac(values, int(expiry_text))):
            return "the call's identity signature does not match"
        if int(expiry_text) < self._clock():
            return "the call's identity signature has expired"
        return None


def current_request_id() -> str:
    return _request_id.get()


def bind_request_id(request_id: str) -> None:
    _request_id.set(request_id)


def identity_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Identity | None:
    values = {key: value for key, value in (metadata or ()) if isinstance(value, str)}
    tenant_id = values.get(TENANT_KEY, "")
    if not tenant_id:
        return None
    return Identity(
        tenant_id=tenant_id,
        user_id=values.get(USER_KEY, ""),
        request_id=values.get(REQUEST_KEY, ""),
        traceparent=values.get(TRACEPARENT_KEY, ""),
        role=values.get(ROLE_KEY, ""),
        api_key_id=values.get(API_KEY_ID_KEY, ""),
    )


def caller(context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
    """The identity the gateway attached; the interceptor has already verified its signature."""
    identity = identity_from_metadata(context.invocation_metadata())
    if identity is None:
        raise PermissionError("no tenant in the call's metadata")
    return identity
