"""gRPC on grpc.aio: the server every service runs and the channels it calls others with.

The server carries the standard health service and reflection, and one interceptor that
binds the caller's request id for logs, refuses calls whose identity is not signed with the
installation's internal secret (identity.Signer),
maps `ParleyError`s to status codes, hides other exceptions behind INTERNAL, and
records Prometheus metrics.
"""

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram

from parley.kit.errors import ParleyError
from parley.kit.identity import REQUEST_KEY, Signer, bind_request_id

log = logging.getLogger(__name__)

# Calls that need no tenant: probes and tooling.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

rpc_handled = Counter("parley_grpc_handled_total", "gRPC calls served", ["method", "code"])
rpc_seconds = Histogram("parley_grpc_handling_seconds", "gRPC call duration", ["method"])

AddServicer = Callable[[Any, grpc.aio.Server], None]
# What every servicer method receives; the type parameters say nothing our code uses.
Context = grpc.aio.ServicerContext[Any, Any]


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler: Any = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(_OPEN_PREFIXES):
            return handler
        metadata = dict(details.invocation_metadata or ())
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, kind)
            if behavior is not None:
                wrap = _wrap_streaming if kind.endswith("_stream") else _wrap_unary
                return handler._replace(**{kind: wrap(behavior, method, metadata, self._signer)})
        return handler


def _admit(method: str, metadata: dict[str, Any], signer: Signer) -> str | None:
    bind_request_id(str(metadata.get(REQUEST_KEY, "")))
    refusal = signer.refusal(metadata)
    if refusal is not None:
        rpc_handled.labels(method, "UNAUTHENTICATED").inc()
        return f"{method}: {refusal}"
    return None


# gRPC's retry pushback (gRFC A6): a negative value tells the client's channel not to retry.
_NO_RETRY = (("grpc-retry-pushback-ms", "-1"),)


async def _fail(context: Context, method: str, error: Exception) -> None:
    if isinstance(error, ParleyError):
        rpc_handled.labels(method, error.code.name).inc()
        # An UNAVAILABLE a service answers with (a dependency down) comes after it may have done
        # work: the channel's retry (open_channel) is for calls that never reached a server.
        no_retry = _NO_RETRY if error.code is grpc.StatusCode.UNAVAILABLE else ()
        await context.abort(error.code, str(error), trailing_metadata=no_retry)
    if isinstance(error, NotImplementedError):
        # The generated base servicer raises it for every call a service does not serve yet.
        rpc_handled.labels(method, "UNIMPLEMENTED").inc()
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    log.exception("unhandled error in %s", method)
    rpc_handled.labels(method, "INTERNAL").inc()
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


def _wrap_unary(
    behavior: Callable[..., Any], method: str, metadata: dict[str, Any], signer: Signer
) -> Callable[..., Any]:
    async def wrapped(request: Any, context: Context) -> Any:
        refusal = _admit(method, metadata, signer)
        if refusal:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal)
        started = time.perf_counter()
        try:
            response = await behavior(request, context)
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as error:  # noqa: BLE001 - the edge where every error becomes a status
            await _fail(context, method, error)
        finally:
            rpc_seconds.labels(method).observe(time.perf_counter() - started)
        rpc_handled.labels(method, "OK").inc()
        return response

    return wrapped


def _wrap_streaming(
    behavior: Callable[..., Any], method: str, metadata: dict[str, Any], signer: Signer
) -> Callable[..., Any]:
    async def wrapped(request: Any, context: Context) -> Any:
        refusal = _admit(method, metadata, signer)
        if refusal:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal)
        try:
            async for item in behavior(request, context):
                yield item
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as error:  # noqa: BLE001
            await _fail(context, method, error)
        rpc_handled.labels(method, "OK").inc()

    return wrapped


class GrpcServer:
    """A grpc.aio server with health and reflection; `stop` drains in-flight calls first."""

    def __init__(self, *, port: int, signer: Signer, host: str = "[::]") -> None:
        self.server = grpc.aio.server(interceptors=[ServerInterceptor(signer)])
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names: list[str] = []
        self.port = self.server.add_insecure_port(f"{host}:{port}")

    def add(self, add_servicer: AddServicer, servicer: object, service_name: str) -> None:
        add_servicer(servicer, self.server)
        self._service_names.append(service_name)

    async def start(self) -> None:
        names: Sequence[str] = [*self._service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], self.server)
        await self.server.start()
        for name in ["", *self._service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_seconds: float) -> None:
        # NOT_SERVING first, so load balancers stop routing here while calls in flight finish.
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_seconds)


# A peer that restarts (a deploy, a crash) is reachable again within a second: reconnect
# quickly, and retry a call that could not reach it for a little longer than that. Only
# UNAVAILABLE is retried: the call never reached a server, or it did not answer at all (an
# UNAVAILABLE a server answers with carries a pushback that stops the retry: _fail).
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def open_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", _SERVICE_CONFIG),
            # Every address a target resolves to (a headless Service's pods), calls spread over them.
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1_000),
            # A long conversation comes back whole; gRPC's default stops at 4 MiB.
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ],
    )


def check_health_blocking(target: str, *, timeout: float = 1.0) -> bool:
    """Whether the gRPC server at `target` reports SERVING (the dev launcher waits on it)."""
    with grpc.insecure_channel(target) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
