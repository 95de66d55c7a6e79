"""The HTTP application: routers, error handlers and the front door (authentication, rate
limits, body bounds, request ids, metrics), assembled."""

from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

from parley.gateway import errors, mcp_server, webapp
from parley.gateway.api.deps import Services
from parley.gateway.front_door import FrontDoor
from parley.gateway.mcp_server import McpEndpoint
from parley.gateway.routes import (
    admin,
    chat,
    collections,
    documents,
    health,
    passages,
    people,
    search,
    sign_in,
    usage,
)
from parley.gateway.routes import openai_compat as openai_routes
from parley.gateway.sign_in import SignIn


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Parley",
        version="0.1.0",
        description="Chat with your documents: collections, documents, streamed answers with sources, usage.",
    )
    app.state.services = services
    app.state.sign_in = _sign_in(services)
    errors.install(app)
    app.include_router(health.router, responses=errors.responses(500))
    for module in (people, sign_in, collections, documents, passages, search, chat, usage, admin):
        app.include_router(module.router, responses=errors.V1_ERRORS)
    # The MCP server (its own ASGI endpoint: the SDK's streamable HTTP transport), before the web app.
    app.router.routes.append(Route(mcp_server.PATH, McpEndpoint(services), methods=["GET", "POST", "DELETE"]))
    # OpenAI's API (Open WebUI, the openai SDK); its errors are the same shape, with OpenAI's fields.
    app.include_router(openai_routes.router, responses=errors.V1_ERRORS)
    webapp.install(app)  # the web app at `/`: static files over the same /v1 API
    app.add_middleware(FrontDoor, services=services)
    _document_own_bodies(app)
    return app


def _document_own_bodies(app: FastAPI) -> None:
    """The OpenAI routes parse their bodies themselves (OpenAI's 400, not FastAPI's 422); their
    schemas join the document's components, which FastAPI builds (once, when first asked)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            document.setdefault("components", {}).setdefault("schemas", {}).update(openai_routes.request_bodies())
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


def _sign_in(services: Services) -> SignIn | None:
    """The web app's sign-in with the identity provider, when one is configured with a client id."""
    settings, sso = services.settings, services.authenticator.sso
    if sso is None or not settings.sso_client_id:
        return None
    secret = settings.sso_client_secret
    return SignIn(
        sso,
        client_id=settings.sso_client_id,
        client_secret=secret.get_secret_value() if secret is not None else "",
        scopes=settings.sso_scopes,
        name=settings.sso_display_name,
        redirect_uri=settings.sso_redirect_uri,
    )
