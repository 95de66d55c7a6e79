"""The ingestion service, for real: migrations on the session's PostgreSQL, the gRPC server on
a free port, the outbox relay, the worker (uploads and artifact jobs) and the indexed consumer
running against the session's NATS. Artifacts are written by `ScriptedWriter`, an in-test
ArtifactWriter (the model behind the real one is another service's).
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.ingestion
from parley.ingestion import events
from parley.ingestion.artifact_writers import ArtifactDraft
from parley.ingestion.artifacts import Artifacts
from parley.ingestion.catalog import Collections
from parley.ingestion.clients import Owner
from parley.ingestion.config import Settings
from parley.ingestion.dead_letters import DeadLetters
from parley.ingestion.documents import Documents
from parley.ingestion.formats import Parser
from parley.ingestion.grpc_api import IngestionApi
from parley.ingestion.models import outbox
from parley.ingestion.pipeline import Pipeline
from parley.ingestion.progress import Progress
from parley.ingestion.screenplay_reports import card_key
from parley.ingestion.store import ArtifactRecord, SectionRecord
from parley.kit import bus, db
from parley.kit.errors import BudgetExceeded
from parley.kit.outbox import OutboxRelay
from parley.kit.testing import Infra, serving
from parley.v1 import ingestion_pb2_grpc

# Small, so the oversize upload test sends little.
TEST_MAX_DOCUMENT_BYTES = 64 * 1024
TEST_INGEST_DURABLE = "test-ingestion-ingest"
MODEL = "test/scripted"


class ScriptedWriter:
    """Artifacts from the sections' own words, at once. A tenant in `broke` is refused as a spent
    budget would be; one in `crash_once` makes its next call fail as a crash would. `calls` says
    who asked for what: (tenant, kind, keys); `keys_billed`, the API key each call was billed to."""

    def __init__(self) -> None:
        self.broke: set[str] = set()
        self.crash_once: set[str] = set()
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []
        self.keys_billed: list[str] = []

    def _called(self, owner: Owner, kind: str, keys: Sequence[str]) -> None:
        if owner.tenant_id in self.broke:
            raise BudgetExceeded("the monthly budget is spent")
        if owner.tenant_id in self.crash_once:
            self.crash_once.discard(owner.tenant_id)
            raise RuntimeError("the process died mid-batch")
        self.calls.append((owner.tenant_id, kind, tuple(keys)))
        self.keys_billed.append(owner.api_key_id)

    def called(self, tenant_id: str) -> list[tuple[str, tuple[str, ...]]]:
        return [(kind, keys) for tenant, kind, keys in self.calls if tenant == tenant_id]

    async def scene_cards(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        self._called(owner, "scene_card", [card_key(section) for section in sections])
        return [
            ArtifactDraft(
                kind="scene_card",
                key=card_key(section),
                content={"heading": section.heading, "summary": section.text.splitlines()[-1]},
                tokens=len(section.text.split()),
                model=MODEL,
                source_sha256=section.content_sha256,
            )
            for section in sections
        ]

    async def outline(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> ArtifactDraft:
        self._called(owner, "outline", ["outline"])
        headings = [section.heading for section in sections if section.heading]
        return ArtifactDraft(
            kind="outline",
            key="outline",
            content={"title": title, "beats": headings},
            tokens=len(headings),
            model=MODEL,
            source_sha256="",
        )

    async def character_sheets(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord], characters: Sequence[str]
    ) -> list[ArtifactDraft]:
        self._called(owner, "character_sheet", characters)
        return [
            ArtifactDraft(
                kind="character_sheet",
                key=name,
                content={
                    "name": name,
                    "scenes": [
                        section.scene.number
                        for section in sections
                        if section.scene is not None and name in section.scene.characters
                    ],
                },
                tokens=3,
                model=MODEL,
                source_sha256="",
            )
            for name in characters
        ]

    async def plot_threads(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        self._called(owner, "plot_thread", ["a-plot"])
        return [
            ArtifactDraft(
                kind="plot_thread",
                key="a-plot",
                content={"name": "A plot", "scenes": len(sections)},
                tokens=4,
                model=MODEL,
                source_sha256="",
            )
        ]

    async def coverage(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord], artifacts: Sequence[ArtifactRecord]
    ) -> ArtifactDraft:
        self._called(owner, "coverage", ["coverage"])
        return ArtifactDraft(
            kind="coverage",
            key="coverage",
            content={"title": title, "read": sorted(f"{artifact.kind}:{artifact.key}" for artifact in artifacts)},
            tokens=5,
            model=MODEL,
            source_sha256="",
        )


@pytest.fixture(scope="session")
def artifact_writer() -> ScriptedWriter:
    return ScriptedWriter()


@pytest_asyncio.fixture(scope="session")
async def ingestion(
    infra: Infra, engine: AsyncEngine, nats_client: NatsClient, artifact_writer: ScriptedWriter
) -> AsyncIterator[ingestion_pb2_grpc.IngestionServiceStub]:
    """A stub of the running service; callers pass identity metadata themselves."""
    await db.migrate(engine, schema="ingestion", migrations=Path(parley.ingestion.__file__).parent / "migrations")
    settings = Settings(
        env="test",
        database_url=infra.database_url,
        nats_url=infra.nats_url,
        max_document_bytes=TEST_MAX_DOCUMENT_BYTES,
    )
    sessions = db.session_factory(engine)
    js = nats_client.jetstream()
    stop = asyncio.Event()
    relay = OutboxRelay(sessions=sessions, table=outbox, js=js, poll_seconds=0.2)
    progress = Progress(sessions=sessions, js=js)
    parser = Parser()  # shared, as in __main__: the worker takes what the upload parsed
    documents = Documents(
        sessions=sessions, progress=progress, settings=settings, notify_outbox=relay.notify, parser=parser
    )
    artifacts = Artifacts(
        sessions=sessions, progress=progress, settings=settings, writer=artifact_writer, notify_outbox=relay.notify
    )
    pipeline = Pipeline(
        sessions=sessions,
        progress=progress,
        settings=settings,
        artifacts=artifacts,
        notify_outbox=relay.notify,
        parser=parser,
    )
    collections = Collections(sessions=sessions, notify_outbox=relay.notify)
    dead_letters = DeadLetters(js=js, pipeline=pipeline)
    tasks = [
        asyncio.create_task(relay.run(stop)),
        asyncio.create_task(
            events.run_by_priority(
                js,
                [
                    *events.ingest_consumers(pipeline, durable_prefix=TEST_INGEST_DURABLE),
                    events.analyze_consumer(artifacts, durable="test-ingestion-analyze"),
                ],
                stop,
            )
        ),
        asyncio.create_task(
            bus.run_consumer(js, events.indexed_consumer(pipeline, durable="test-ingestion-indexed"), stop)
        ),
    ]
    api = IngestionApi(
        collections=collections,
        documents=documents,
        progress=progress,
        dead_letters=dead_letters,
        artifacts=artifacts,
    )
    try:
        async with serving(
            ingestion_pb2_grpc.add_IngestionServiceServicer_to_server, api, "parley.v1.IngestionService"
        ) as channel:
            yield ingestion_pb2_grpc.IngestionServiceStub(channel)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
