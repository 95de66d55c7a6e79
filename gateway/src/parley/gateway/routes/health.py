"""Liveness, readiness and metrics: for the supervisor and Prometheus, without a key."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from parley.gateway import store
from parley.gateway.api.deps import Deps
from parley.gateway.errors import ApiError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: Deps) -> dict[str, str]:
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
