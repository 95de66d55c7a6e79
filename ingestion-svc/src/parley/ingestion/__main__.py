"""Start ingestion: migrations, the gRPC API, the ingest worker (uploads, then artifact jobs), the
indexed consumer, the outbox relay."""

import asyncio
from pathlib import Path

from parley.ingestion import events
from parley.ingestion.artifact_writers import build_writer
from parley.ingestion.artifacts import Artifacts
from parley.ingestion.catalog import Collections
from parley.ingestion.clients import ChatCompleter
from parley.ingestion.config import Settings
from parley.ingestion.dead_letters import DeadLetters
from parley.ingestion.documents import Documents
from parley.ingestion.formats import Parser
from parley.ingestion.grpc_api import IngestionApi
from parley.ingestion.models import outbox
from parley.ingestion.pipeline import Pipeline
from parley.ingestion.progress import Progress
from parley.kit.contracts import LOCAL_PROVIDER
from parley.kit.outbox import OutboxRelay
from parley.kit.runtime import ServiceRuntime
from parley.kit.tokens import load_encoding
from parley.v1 import ingestion_pb2_grpc


async def main() -> None:
    settings = Settings()
    await load_encoding()
    runtime = await ServiceRuntime.start(
        "ingestion", settings, schema="ingestion", migrations=Path(__file__).parent / "migrations"
    )
    # A chunk set larger than the connected NATS accepts would block the outbox for good: such a
    # document fails instead. Leave room for the event's headers.
    fits = runtime.nc.max_payload - 64 * 1024
    if settings.max_event_bytes > fits:
        settings = settings.model_copy(update={"max_event_bytes": fits})
    # `local` artifacts are extracted here; any other provider writes them through chat-svc.
    completer = (
        None
        if settings.artifacts_provider == LOCAL_PROVIDER
        else ChatCompleter(
            settings.chat_target,
            deadline_seconds=settings.artifacts_deadline_seconds,
            provider=settings.artifacts_provider,
            model=settings.artifacts_model,
            signer=settings.signer(),
        )
    )
    try:
        relay = OutboxRelay(sessions=runtime.sessions, table=outbox, js=runtime.js)
        runtime.spawn(relay.run(runtime.stopping), name="outbox")
        collections = Collections(sessions=runtime.sessions, notify_outbox=relay.notify)
        progress = Progress(sessions=runtime.sessions, js=runtime.js)
        # One parser for uploads and the worker: a job takes the sections its upload just parsed.
        parser = Parser()
        documents = Documents(
            sessions=runtime.sessions, progress=progress, settings=settings, notify_outbox=relay.notify, parser=parser
        )
        artifacts = Artifacts(
            sessions=runtime.sessions,
            progress=progress,
            settings=settings,
            writer=build_writer(settings, completer),
            notify_outbox=relay.notify,
        )
        pipeline = Pipeline(
            sessions=runtime.sessions,
            progress=progress,
            settings=settings,
            artifacts=artifacts,
            notify_outbox=relay.notify,
            parser=parser,
        )
        dead_letters = DeadLetters(js=runtime.js, pipeline=pipeline)
        await runtime.serve_grpc(
            (
                ingestion_pb2_grpc.add_IngestionServiceServicer_to_server,
                IngestionApi(
                    collections=collections,
                    documents=documents,
                    progress=progress,
                    dead_letters=dead_letters,
                    artifacts=artifacts,
                ),
                "parley.v1.IngestionService",
            )
        )
        runtime.spawn(
            events.run_by_priority(
                runtime.js, [*events.ingest_consumers(pipeline), events.analyze_consumer(artifacts)], runtime.stopping
            ),
            name="ingest-worker",
        )
        runtime.consume(events.indexed_consumer(pipeline))
        await runtime.wait_for_signal()
    finally:
        await runtime.close()
        if completer is not None:
            await completer.close()


if __name__ == "__main__":
    asyncio.run(main())
