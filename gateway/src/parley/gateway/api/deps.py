"""What routes depend on, as `Annotated` aliases so their signatures read like sentences."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from parley.gateway import auth
from parley.gateway.clients import Backends, ChatBackend
from parley.gateway.config import Settings
from parley.gateway.errors import ApiError
from parley.gateway.store import Principal
from parley.kit.db import Sessions


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a request may use, built once in __main__ and kept on the app's state."""

    settings: Settings
    sessions: Sessions
    backends: Backends
    nc: NatsClient
    js: JetStreamContext
    chat: ChatBackend


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_principal(request: Request, services: Annotated[Services, Depends(get_services)]) -> Principal:
    key = _presented_key(request)
    if not key:
        raise ApiError(
            401,
            "unauthenticated",
            "send an API key: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = await auth.authenticate(
        services.sessions, key, pepper=services.settings.api_key_pepper.get_secret_value()
    )
    if principal is None:
        raise ApiError(401, "unauthenticated", "the API key is not valid", headers={"WWW-Authenticate": "Bearer"})
    return principal


def _presented_key(request: Request) -> str:
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    return request.headers.get("x-api-key", "").strip()


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
Deps = Annotated[Services, Depends(get_services)]
