"""Liveness, readiness and metrics: for the supervisor and Prometheus, without a key."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from parley.gateway import store
from parley.gateway.api.deps import Deps
from parley.gateway.errors import ApiError, responses

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers. Nothing else, so a restart is never the cure for a dependency."""
    return {"status": "ok"}


@router.get("/readyz", responses=responses(503))
async def readyz(services: Deps) -> dict[str, str]:
    """Readiness: what every request of this gateway needs, its database and NATS. A backend service
    that is down is not checked: taking every gateway out of rotation would turn one service's outage
    into a total one; the routes that need it answer 503 `unavailable` instead, the others keep working."""
    try:
        async with services.sessions() as session:
            await store.ping(session=session)
    except Exception as error:  # the database's own error is logged, not returned
        raise ApiError(503, "not_ready", "the database is not reachable") from error
    if not services.nc.is_connected:
        raise ApiError(503, "not_ready", "NATS is not connected")
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
