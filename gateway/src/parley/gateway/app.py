"""The HTTP application: routers, error handlers and the request-id middleware, assembled."""

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import Counter, Histogram

from parley.gateway import errors, webapp
from parley.gateway.api.deps import Services
from parley.gateway.routes import admin, chat, collections, documents, health, search, usage
from parley.kit.identity import bind_request_id

REQUEST_ID_HEADER = "X-Request-ID"
# A client's own request id is kept only if it is a plain token, so logs cannot be forged with it.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")

access_log = logging.getLogger("parley.gateway.access")
http_requests = Counter("parley_gateway_http_requests_total", "HTTP requests", ["method", "route", "status"])
http_seconds = Histogram("parley_gateway_http_request_seconds", "HTTP time to response headers", ["method", "route"])


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Parley",
        version="0.1.0",
        description="Chat with your documents: collections, documents, streamed answers with sources, usage.",
    )
    app.state.services = services
    # An upload plus its multipart framing and form fields.
    body_limit = services.settings.max_upload_bytes + 64 * 1024
    errors.install(app)
    for module in (health, collections, documents, search, chat, usage, admin):
        app.include_router(module.router)
    webapp.install(app)  # the web app at `/`: static files over the same /v1 API

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        rid = offered if _CLIENT_REQUEST_ID.match(offered) else uuid.uuid4().hex
        bind_request_id(rid)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > body_limit:
            # Refused before the body is read: a huge upload must not fill the gateway's disk first.
            return errors.error_response(413, "payload_too_large", f"the request body is over {body_limit} bytes")
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        elapsed = time.perf_counter() - started
        http_seconds.labels(request.method, route).observe(elapsed)
        http_requests.labels(request.method, route, str(response.status_code)).inc()
        # One line per request, with its request id (the formatter adds it): the access log.
        access_log.info(
            "%s %s %d",
            request.method,
            route,
            response.status_code,
            extra={"fields": {"status": response.status_code, "ms": round(elapsed * 1000, 1)}},
        )
        response.headers[REQUEST_ID_HEADER] = rid
        return response

    return app
