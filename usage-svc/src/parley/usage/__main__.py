"""python -m parley.usage: wiring only."""

import asyncio
from datetime import timedelta
from pathlib import Path

from parley.kit.runtime import ServiceRuntime
from parley.usage import events
from parley.usage.budget import Budgets
from parley.usage.config import Settings
from parley.usage.grpc_api import UsageApi
from parley.usage.prices import Prices
from parley.usage.recording import Recorder
from parley.usage.reports import Reports
from parley.v1 import usage_pb2_grpc


async def main() -> None:
    settings = Settings()
    runtime = await ServiceRuntime.start(
        "usage", settings, schema="usage", migrations=Path(__file__).parent / "migrations"
    )
    try:
        sessions = runtime.sessions
        await runtime.serve_grpc(
            (
                usage_pb2_grpc.add_UsageServiceServicer_to_server,
                UsageApi(
                    budgets=Budgets(
                        sessions=sessions, reservation_ttl=timedelta(seconds=settings.reservation_ttl_seconds)
                    ),
                    prices=Prices(sessions=sessions),
                    reports=Reports(sessions=sessions, export_rows_per_chunk=settings.export_rows_per_chunk),
                ),
                "parley.v1.UsageService",
            )
        )
        for consumer in events.consumers(recorder=Recorder(sessions=sessions)):
            runtime.consume(consumer)
        await runtime.wait_for_signal()
    finally:
        await runtime.close()


if __name__ == "__main__":
    asyncio.run(main())
