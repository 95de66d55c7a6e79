"""One service's process: its engine, NATS, gRPC server and background tasks, started in
order and stopped in reverse on SIGTERM or SIGINT: stop taking work, finish what is in
flight, drain NATS, close the pool.
"""

import asyncio
import logging
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Self

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from prometheus_client import start_http_server
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.kit import bus, db
from parley.kit.logs import configure_logging
from parley.kit.rpc import AddServicer, GrpcServer
from parley.kit.settings import ServiceSettings

log = logging.getLogger(__name__)


class ServiceRuntime:
    def __init__(
        self, *, name: str, settings: ServiceSettings, engine: AsyncEngine, nc: NatsClient, js: JetStreamContext
    ) -> None:
        self.name = name
        self.settings = settings
        self.engine = engine
        self.sessions = db.session_factory(engine)
        self.nc = nc
        self.js = js
        self.stopping = asyncio.Event()
        self.grpc: GrpcServer | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    @classmethod
    async def start(cls, name: str, settings: ServiceSettings, *, schema: str, migrations: Path | None) -> Self:
        configure_logging(name, settings.log_level)
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.listen_host)
        engine = db.create_engine(settings.database_url, pool_size=settings.db_pool_size)
        if migrations is not None:
            await db.migrate(engine, schema=schema, migrations=migrations)
        nc = await bus.connect(settings.nats_url, name=f"parley-{name}", request_timeout=settings.call_deadline_seconds)
        js = nc.jetstream(timeout=settings.call_deadline_seconds)
        await bus.ensure_streams(js)
        log.info("started", extra={"fields": {"grpc_port": settings.grpc_port}})
        return cls(name=name, settings=settings, engine=engine, nc=nc, js=js)

    async def serve_grpc(self, *services: tuple[AddServicer, object, str]) -> int:
        self.grpc = GrpcServer(
            port=self.settings.grpc_port, host=self.settings.listen_host, signer=self.settings.signer()
        )
        for add_servicer, servicer, service_name in services:
            self.grpc.add(add_servicer, servicer, service_name)
        await self.grpc.start()
        return self.grpc.port

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run background work (a consumer, a relay) until `stopping` is set."""
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._report_crash)
        self._tasks.append(task)

    def consume(self, consumer: bus.Consumer) -> None:
        self.spawn(bus.run_consumer(self.js, consumer, self.stopping), name=f"consumer:{consumer.durable}")

    def _report_crash(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s died", task.get_name(), exc_info=task.exception())
            # A service that lost a consumer is not healthy; stop so the supervisor restarts it.
            self.stopping.set()

    async def wait_for_signal(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        await self.stopping.wait()
        log.info("stopping")

    async def stop_taking_work(self) -> None:
        """Health NOT_SERVING and the gRPC server closed; calls in flight get the grace period."""
        self.stopping.set()
        if self.grpc is not None:
            server, self.grpc = self.grpc, None
            await server.stop(self.settings.shutdown_grace_seconds)

    async def close(self) -> None:
        await self.stop_taking_work()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace_seconds)
            for task in pending:
                task.cancel()
        if self.nc.is_connected:
            await self.nc.drain()
        await self.engine.dispose()
        log.info("stopped")
