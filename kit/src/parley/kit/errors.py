"""The errors domain code raises, mapped to gRPC status codes once, at the edge.

ParleyError
├── InvalidInput        INVALID_ARGUMENT   (HTTP 400/422)
├── NotFound            NOT_FOUND          (HTTP 404; also another tenant's ids)
├── Conflict            ALREADY_EXISTS     (HTTP 409)
├── FailedPrecondition  FAILED_PRECONDITION (HTTP 409)
├── BudgetExceeded      RESOURCE_EXHAUSTED (HTTP 402)
└── Unavailable         UNAVAILABLE        (HTTP 503)
"""

import grpc


class ParleyError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidInput(ParleyError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ParleyError):
    code = grpc.StatusCode.NOT_FOUND


class Conflict(ParleyError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ParleyError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class BudgetExceeded(ParleyError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ParleyError):
    code = grpc.StatusCode.UNAVAILABLE
