"""What routes depend on, as `Annotated` aliases so their signatures read like sentences:
`who: Reader` is anyone of the tenant with a `read` credential, `who: Admin` an admin or owner
whose credential carries `admin` (access.py holds the matrix); `ingestion: Ingestion` is the
backend a route calls (clients.py), one per service."""

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from parley.gateway import access
from parley.gateway.auth import Authenticator
from parley.gateway.budgets import Budgets
from parley.gateway.clients import ChatBackend, IngestionBackend, RetrievalBackend, UsageBackend
from parley.gateway.config import Settings
from parley.gateway.errors import ApiError
from parley.gateway.front_door import principal_of
from parley.gateway.ratelimit import RateLimiter
from parley.gateway.store import Principal
from parley.kit.db import Sessions


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """Everything a request may use, built once in __main__ and kept on the app's state."""

    settings: Settings
    sessions: Sessions
    nc: NatsClient
    js: JetStreamContext
    authenticator: Authenticator
    ingestion: IngestionBackend
    retrieval: RetrievalBackend
    chat: ChatBackend
    usage: UsageBackend
    limiter: RateLimiter = field(default_factory=RateLimiter)
    budgets: Budgets = field(default_factory=Budgets)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_ingestion(request: Request) -> IngestionBackend:
    return get_services(request).ingestion


def get_retrieval(request: Request) -> RetrievalBackend:
    return get_services(request).retrieval


def get_chat(request: Request) -> ChatBackend:
    return get_services(request).chat


def get_usage(request: Request) -> UsageBackend:
    return get_services(request).usage


def get_principal(request: Request) -> Principal:
    # The front door authenticated the request before its body was read (front_door.py).
    principal = principal_of(request.scope)
    if principal is None:
        raise ApiError(401, "unauthenticated", "send an API key: Authorization: Bearer <key>")
    return principal


def requires(action: access.Action) -> object:
    def check(who: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not who.may(action):
            if who.rank < action.role:
                raise ApiError(403, "forbidden", f"to {action.name} needs the {action.role.name} role or above")
            raise ApiError(403, "forbidden", f"to {action.name} needs a key with the `{action.scope}` scope")
        return who

    return Depends(check)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
Reader = Annotated[Principal, requires(access.READ)]
Writer = Annotated[Principal, requires(access.WRITE)]
Deleter = Annotated[Principal, requires(access.DELETE)]
Chatter = Annotated[Principal, requires(access.CHAT)]
Spender = Annotated[Principal, requires(access.SPEND)]
PeopleAdmin = Annotated[Principal, requires(access.MANAGE_PEOPLE)]
BudgetAdmin = Annotated[Principal, requires(access.SET_BUDGET)]
Operator = Annotated[Principal, requires(access.OPERATE)]
Deps = Annotated[Services, Depends(get_services)]
Ingestion = Annotated[IngestionBackend, Depends(get_ingestion)]
Retrieval = Annotated[RetrievalBackend, Depends(get_retrieval)]
Chat = Annotated[ChatBackend, Depends(get_chat)]
Usage = Annotated[UsageBackend, Depends(get_usage)]
