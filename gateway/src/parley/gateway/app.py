"""The HTTP application: routers, error handlers and the front door (authentication, rate
limits, body bounds, request ids, metrics), assembled."""

from fastapi import FastAPI

from parley.gateway import errors, webapp
from parley.gateway.api.deps import Services
from parley.gateway.front_door import FrontDoor
from parley.gateway.routes import admin, chat, collections, documents, health, people, search, usage
from parley.gateway.routes import openai_compat as openai_routes


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Parley",
        version="0.1.0",
        description="Chat with your documents: collections, documents, streamed answers with sources, usage.",
    )
    app.state.services = services
    errors.install(app)
    for module in (health, people, collections, documents, search, chat, usage, admin):
        app.include_router(module.router)
    app.include_router(openai_routes.router)  # OpenAI's API: Open WebUI, the openai SDK
    webapp.install(app)  # the web app at `/`: static files over the same /v1 API
    app.add_middleware(FrontDoor, services=services)
    return app
