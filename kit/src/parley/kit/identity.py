"""Who a call is for. The gateway sets it; internal services read it from gRPC metadata."""

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc

TENANT_KEY = "x-tenant-id"
USER_KEY = "x-user-id"
REQUEST_KEY = "x-request-id"
TRACEPARENT_KEY = "traceparent"

_request_id: ContextVar[str] = ContextVar("parley_request_id", default="")


@dataclass(frozen=True, slots=True)
class Identity:
    tenant_id: str
    user_id: str = ""
    request_id: str = ""
    traceparent: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        pairs = [(TENANT_KEY, self.tenant_id), (USER_KEY, self.user_id), (REQUEST_KEY, self.request_id)]
        if self.traceparent:
            pairs.append((TRACEPARENT_KEY, self.traceparent))
        return tuple((key, value) for key, value in pairs if value)


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
    )


def caller(context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
    """The identity the gateway attached; the interceptor has already refused calls without one."""
    identity = identity_from_metadata(context.invocation_metadata())
    if identity is None:
        raise PermissionError("no tenant in the call's metadata")
    return identity
