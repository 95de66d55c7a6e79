"""python -m parley.usage: wiring only."""

import asyncio
from pathlib import Path

from parley.kit.runtime import ServiceRuntime
from parley.usage import events
from parley.usage.config import Settings
from parley.usage.grpc_api import UsageApi
from parley.v1 import usage_pb2_grpc


async def main() -> None:
    settings = Settings()
    runtime = await ServiceRuntime.start(
        "usage", settings, schema="usage", migrations=Path(__file__).parent / "migrations"
    )
    try:
        await runtime.serve_grpc(
            (
                usage_pb2_grpc.add_UsageServiceServicer_to_server,
                UsageApi(runtime.sessions, settings),
                "parley.v1.UsageService",
            )
        )
        for consumer in events.consumers(runtime.sessions):
            runtime.consume(consumer)
        await runtime.wait_for_signal()
    finally:
        await runtime.close()


if __name__ == "__main__":
    asyncio.run(main())
