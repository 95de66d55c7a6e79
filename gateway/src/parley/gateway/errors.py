"""One JSON shape for every error, with the request id, and the mapping from gRPC status codes.

    {"error": {"code": "not_found", "message": "collection … not found", "request_id": "…",
               "type": "not_found_error", "param": null}}

`type` and `param` make the same body OpenAI's error shape too, so an OpenAI client reads any
error of the gateway (the front door's 401 and 429 included) on the OpenAI-compatible routes.

Internal details never reach the client: an unexpected failure is `internal` with a generic
message, and the request id is what an operator greps the logs for.
"""

import logging
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from parley.kit.identity import current_request_id

log = logging.getLogger(__name__)

# gRPC status → (HTTP status, error code)
_FROM_GRPC: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_argument"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "already_exists"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "failed_precondition"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (402, "budget_exceeded"),  # usage-svc refused the hold
    grpc.StatusCode.UNIMPLEMENTED: (501, "not_implemented"),
    grpc.StatusCode.UNAVAILABLE: (503, "unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "deadline_exceeded"),
}
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorInfo(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str
    request_id: str
    # OpenAI's two fields too, so an OpenAI client reads any of Parley's errors (docs/api.md).
    type: str = Field(examples=["not_found_error"], description="OpenAI's error type for the status")
    param: str | None = Field(default=None, description="OpenAI's `param`: always null here")
    details: list[ErrorDetail] | None = Field(default=None, description="422 only: each field and why")


class ErrorBody(BaseModel):
    """The one error shape, whatever the route and the status."""

    error: ErrorInfo


_WHEN = {
    400: "a value the service refuses (`invalid_argument`)",
    401: "no credential, or one that is not valid (`unauthenticated`); the body was not read",
    402: "the budget cannot hold this call (`budget_exceeded`)",
    403: "the role or the key's scopes do not allow it (`forbidden`)",
    404: "no such id, including every id of another tenant (`not_found`)",
    409: "a conflict (`already_exists`, `failed_precondition`)",
    410: "the turn's events are no longer kept (`turn_events_expired`)",
    413: "the body is over the limit, however it is sent (`payload_too_large`)",
    422: "the body, path or query does not validate (`invalid_request`, with `details`)",
    429: "a rate limit (`rate_limited`); see `Retry-After` and `RateLimit-*`",
    500: "an unexpected failure (`internal`); quote the request id",
    501: "not implemented by the backend yet (`not_implemented`)",
    502: "the turn failed after it started (`turn_failed` or the turn's error code)",
    503: "a backend or the key store is unavailable (`unavailable`); retry",
    504: "a backend or the answer was too slow (`deadline_exceeded`, `timeout`)",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, each with the error schema."""
    return {status: {"model": ErrorBody, "description": _WHEN[status]} for status in statuses}


# What any `/v1` route may answer besides its own success: the front door's and the backends'.
V1_ERRORS = responses(400, 401, 403, 404, 409, 413, 422, 429, 500, 503, 504)


# HTTP status → OpenAI's error `type`
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    410: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The one error shape. The request id goes in the header too: a 500 is answered outside
    the middleware that sets it on every other response."""
    request_id = current_request_id()
    kind = _OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"code": code, "message": message, "request_id": request_id, "type": kind, "param": None, **extra}}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "X-Request-ID": request_id})


def from_grpc(error: grpc.aio.AioRpcError) -> ApiError:
    status, code = _FROM_GRPC.get(error.code(), (500, "internal"))
    if status >= 500:
        log.error("backend call failed", extra={"fields": {"grpc_code": error.code().name, "detail": error.details()}})
        message = "a backend service is unavailable; try again" if status in (503, 504) else "internal error"
    else:
        message = error.details() or code
    return ApiError(status, code, message)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, headers=error.headers)

    @app.exception_handler(grpc.aio.AioRpcError)
    async def grpc_error(request: Request, error: grpc.aio.AioRpcError) -> JSONResponse:
        return await api_error(request, from_grpc(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(part) for part in item["loc"][1:]) or str(item["loc"][0]), "message": item["msg"]}
            for item in error.errors()
        ]
        return error_response(422, "invalid_request", "the request is not valid", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "error")
        return error_response(error.status_code, code, str(error.detail), headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal", "internal error")
