"""What every request passes before any route sees it, as one ASGI middleware, in this order:

1. a request id (the client's when it is a plain token), bound for logs and echoed in a header;
2. for `/v1`: the caller authenticated from the headers alone — a request without a valid
   credential is refused before one byte of its body is read; requests with one credential that
   arrive together are looked up and counted together (single_flight.py), never from a cache;
3. an over-long id in the path is a 404 (no id is longer than `MAX_ID_CHARS`), before any
   backend is called;
4. the rate limits, counted across replicas (ratelimit.py), 429 with `Retry-After`;
5. the body bounded: a declared length over the limit is refused at once, and a body without
   one (chunked) is read only up to the limit, then 413 — memory never holds more;
6. metrics and an access line for every request, including those that ended in an unhandled
   error (counted as 500).

A store that cannot be reached (PostgreSQL holds the keys and the counters) is a 503: the door
never opens without knowing who is at it and how often they came.
"""

import logging
import re
import time
import uuid
from functools import partial
from typing import Any

from fastapi import HTTPException
from prometheus_client import Counter, Histogram
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.gateway import errors
from parley.gateway.access import Principal
from parley.gateway.ratelimit import Limits, Verdict
from parley.gateway.single_flight import Coalescer
from parley.gateway.store import TenantLimits
from parley.kit.contracts import MAX_ID_CHARS
from parley.kit.identity import bind_request_id

REQUEST_ID_HEADER = "X-Request-ID"
# A client's own request id is kept only if it is a plain token, so logs cannot be forged with it.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
PRINCIPAL = "parley.principal"
# Multipart framing and the form's other fields around an upload.
_MULTIPART_SLACK = 64 * 1024

log = logging.getLogger(__name__)
# What the chat-turns limit counts: a turn started either way.
CHAT_PATHS = ("/v1/chat", "/v1/chat/completions")
# How one gets a credential (routes/sign_in.py): let in without one; their bodies stay bounded.
PUBLIC_PATHS = frozenset({"/v1/sso/config", "/v1/sso/token"})
access_log = logging.getLogger("parley.gateway.access")
http_requests = Counter("parley_gateway_http_requests_total", "HTTP requests", ["method", "route", "status"])
http_seconds = Histogram("parley_gateway_http_request_seconds", "HTTP time to response headers", ["method", "route"])
Admitted = tuple[Principal, Verdict]
rate_limited = Counter("parley_gateway_rate_limited_total", "Requests refused by a rate limit", ["what"])


def principal_of(scope: Scope) -> Principal | None:
    found: Principal | None = scope.get(PRINCIPAL)
    return found


def presented_credential(headers: Headers) -> str:
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    return headers.get("x-api-key", "").strip()


class FrontDoor:
    def __init__(self, app: ASGIApp, *, services: Any) -> None:
        self.app = app
        # The gateway's Services (api.deps); typed loosely to keep this module free of the routes.
        self.services = services
        # A burst of requests with one credential (followers joining a turn) is one lookup.
        self._admissions: Coalescer[tuple[str, bool], Admitted | None] = Coalescer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        offered = headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if _CLIENT_REQUEST_ID.match(offered) else uuid.uuid4().hex
        bind_request_id(request_id)
        started = time.perf_counter()
        status = 500
        extra_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *(pair for pair in message.get("headers", []) if pair[0].lower() != b"x-request-id"),
                    *extra_headers,
                ]
            await send(message)

        try:
            refusal = await self._admit(scope, headers, extra_headers)
            if refusal is not None:
                await refusal(scope, receive, send_with_headers)
                return
            await self.app(scope, self._bounded(scope, headers, receive), send_with_headers)
        except Exception:
            status = 500
            raise
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            elapsed = time.perf_counter() - started
            http_seconds.labels(method, route).observe(elapsed)
            http_requests.labels(method, route, str(status)).inc()
            # One line per request, with its request id (the formatter adds it): the access log.
            access_log.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={"fields": {"status": status, "ms": round(elapsed * 1000, 1)}},
            )

    async def _admit(self, scope: Scope, headers: Headers, extra_headers: list[tuple[bytes, bytes]]) -> Any:
        path: str = scope["path"]
        # /mcp (mcp_server.py) is the API too, for MCP clients: the same keys, limits and bounds.
        if not (path.startswith("/v1/") or path == "/mcp" or path.startswith("/mcp/")):
            return None
        if path in PUBLIC_PATHS:
            return _declared_too_long(self.services.settings, headers)
        credential = presented_credential(headers)
        if not credential:
            return _unauthenticated("send an API key: Authorization: Bearer <key>")
        settings = self.services.settings
        chat = scope["method"] == "POST" and path.rstrip("/") in CHAT_PATHS
        try:
            admitted = await self._admissions.call((credential, chat), partial(self._admit_batch, credential, chat))
            if admitted is None:
                return _unauthenticated("the credential is not valid")
            principal, verdict = admitted
        except errors.ApiError as error:
            return errors.error_response(error.status, error.code, error.message, headers=error.headers)
        except Exception:  # PostgreSQL unreachable: refuse, never admit blind
            log.warning("the key store is unreachable", exc_info=True)
            return errors.error_response(
                503, "unavailable", "authentication is unavailable; try again", headers={"Retry-After": "5"}
            )
        extra_headers.extend((name.lower().encode(), value.encode()) for name, value in verdict.headers().items())
        if not verdict.allowed:
            rate_limited.labels(verdict.what).inc()
            refusal = verdict.refusal()  # its headers are in extra_headers already
            return errors.error_response(refusal.status, refusal.code, refusal.message)
        scope[PRINCIPAL] = principal
        if any(len(segment) > MAX_ID_CHARS for segment in path.split("/")):
            return errors.error_response(404, "not_found", "no such id")
        return _declared_too_long(settings, headers)

    async def _admit_batch(self, credential: str, chat: bool, requests: int) -> list[Admitted | None]:
        """`requests` requests with one credential that arrived together: the credential looked
        up once and their rate-limit buckets counted once, in one transaction (single_flight.py:
        the lookup began after every one of them arrived, so a revocation is never missed)."""
        async with self.services.sessions.begin() as session:
            found = await self.services.authenticator.authenticate(session, credential)
            if found is None:
                return [None] * requests
            principal, tenant_limits = found
            verdicts = await self.services.limiter.admit_many(
                session, principal, _limits(self.services.settings, tenant_limits), chat=chat, requests=requests
            )
        return [(principal, verdict) for verdict in verdicts]

    def _bounded(self, scope: Scope, headers: Headers, receive: Receive) -> Receive:
        """`receive` that stops at the body limit, whatever the encoding: a chunked body is
        never held past it."""
        limit = _body_limit(self.services.settings, headers)
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"the request body is over {limit} bytes")
            return message

        return bounded


def _declared_too_long(settings: Any, headers: Headers) -> Any:
    declared = headers.get("content-length", "")
    limit = _body_limit(settings, headers)
    if declared.isdigit() and int(declared) > limit:
        # Refused before the body is read: a huge upload must not fill the gateway's disk first.
        return errors.error_response(413, "payload_too_large", f"the request body is over {limit} bytes")
    return None


def _body_limit(settings: Any, headers: Headers) -> int:
    if headers.get("content-type", "").lower().startswith("multipart/"):
        return int(settings.max_upload_bytes) + _MULTIPART_SLACK
    return int(settings.max_body_bytes)


def _limits(settings: Any, tenant: TenantLimits) -> Limits:
    def pick(own: int | None, default: int) -> int:
        return default if own is None else own

    return Limits(
        requests_per_minute=pick(tenant.requests_per_minute, settings.rate_requests_per_minute),
        chat_requests_per_minute=pick(tenant.chat_requests_per_minute, settings.rate_chat_requests_per_minute),
        llm_tokens_per_minute=pick(tenant.llm_tokens_per_minute, settings.rate_llm_tokens_per_minute),
    )


def _unauthenticated(message: str) -> Any:
    return errors.error_response(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})
