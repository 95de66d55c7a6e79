"""The gateway: `python -m parley.gateway`."""

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from parley.gateway import auth
from parley.gateway.api.deps import Services
from parley.gateway.app import create_app
from parley.gateway.clients import Clients
from parley.gateway.config import Settings
from parley.kit.runtime import ServiceRuntime
from parley.kit.tokens import load_encoding

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns SIGTERM and shuts down in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def main() -> None:
    settings = Settings()
    await load_encoding()
    runtime = await ServiceRuntime.start(
        "gateway", settings, schema="gateway", migrations=Path(__file__).parent / "migrations"
    )
    clients = Clients.open(
        ingestion_target=settings.ingestion_target,
        retrieval_target=settings.retrieval_target,
        chat_target=settings.chat_target,
        usage_target=settings.usage_target,
        deadline_seconds=settings.call_deadline_seconds,
        signer=settings.signer(),
    )
    try:
        if settings.bootstrap_api_key is not None:
            await auth.bootstrap(
                runtime.sessions,
                settings.bootstrap_api_key.get_secret_value(),
                pepper=settings.api_key_pepper.get_secret_value(),
            )
        services = Services(
            settings=settings,
            sessions=runtime.sessions,
            nc=runtime.nc,
            js=runtime.js,
            authenticator=auth.Authenticator.from_settings(settings),
            ingestion=clients.ingestion,
            retrieval=clients.retrieval,
            chat=clients.chat,
            usage=clients.usage,
        )
        app = create_app(services)
        server = _Server(
            uvicorn.Config(
                app,
                host=settings.listen_host,
                port=settings.http_port,
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
            )
        )
        serving = asyncio.create_task(server.serve(), name="http")
        signalled = asyncio.create_task(runtime.wait_for_signal(), name="signals")
        await asyncio.wait({serving, signalled}, return_when=asyncio.FIRST_COMPLETED)
        # Stop taking requests, let those in flight finish, then close the rest.
        server.should_exit = True
        await serving
        signalled.cancel()
    finally:
        await runtime.close()
        await clients.close()


if __name__ == "__main__":
    asyncio.run(main())
