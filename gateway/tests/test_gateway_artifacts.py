"""GET /v1/documents/{id}/artifacts over the public HTTP API: the gateway app in front of a real
ingestion-svc (its gRPC server, its schema on the real PostgreSQL). The version is made searchable
by ingestion's own Pipeline, as its worker and its indexed consumer do; artifacts are written by
an in-test ArtifactWriter (the real one asks chat-svc's model)."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

import parley.ingestion
from parley.gateway import auth, store
from parley.ingestion.artifact_writers import ArtifactDraft
from parley.ingestion.artifacts import Artifacts, card_key
from parley.ingestion.catalog import Collections
from parley.ingestion.clients import Owner
from parley.ingestion.config import Settings as IngestionSettings
from parley.ingestion.dead_letters import DeadLetters
from parley.ingestion.documents import Documents
from parley.ingestion.grpc_api import IngestionApi
from parley.ingestion.pipeline import Pipeline
from parley.ingestion.progress import Progress
from parley.ingestion.store import SectionRecord
from parley.kit import db
from parley.kit.errors import BudgetExceeded
from parley.kit.rpc import GrpcServer
from parley.kit.testing import TEST_SIGNER, Infra
from parley.v1 import ingestion_pb2_grpc

MANUAL = b"# Guide\n\nRead me first.\n\n## Setup\n\nInstall it, then run it.\n"


class FirstLineWriter:
    """Cards and an outline from the sections' own words; refuses tenants in `broke`."""

    def __init__(self) -> None:
        self.broke: set[str] = set()

    def _check(self, owner: Owner) -> None:
        if owner.tenant_id in self.broke:
            raise BudgetExceeded("the monthly budget is spent")

    async def scene_cards(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        self._check(owner)
        return [
            ArtifactDraft(
                kind="scene_card",
                key=card_key(section),
                content={"heading": section.heading, "gist": section.text.splitlines()[0]},
                tokens=len(section.text.split()),
                model="test/first-line",
                source_sha256=section.content_sha256,
            )
            for section in sections
        ]

    async def outline(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> ArtifactDraft:
        self._check(owner)
        beats = [section.heading for section in sections]
        return ArtifactDraft("outline", "outline", {"beats": beats}, len(beats), "test/first-line", "")

    async def character_sheets(
        self, *, owner: Owner, title: str, sections: Sequence[SectionRecord], characters: Sequence[str]
    ) -> list[ArtifactDraft]:
        return []

    async def plot_threads(self, *, owner: Owner, title: str, sections: Sequence[SectionRecord]) -> list[ArtifactDraft]:
        return []


@dataclass(frozen=True, slots=True)
class Ingestion:
    target: str
    pipeline: Pipeline
    writer: FirstLineWriter


@pytest_asyncio.fixture(scope="module")
async def ingestion(engine: AsyncEngine, infra: Infra, nats_client: NatsClient) -> AsyncIterator[Ingestion]:
    await db.migrate(engine, schema="ingestion", migrations=Path(parley.ingestion.__file__).parent / "migrations")
    sessions = db.session_factory(engine)
    settings = IngestionSettings(env="test", database_url=infra.database_url, nats_url=infra.nats_url)
    progress = Progress(sessions=sessions, js=nats_client.jetstream())
    writer = FirstLineWriter()
    artifacts = Artifacts(
        sessions=sessions, progress=progress, settings=settings, writer=writer, notify_outbox=lambda: None
    )
    pipeline = Pipeline(
        sessions=sessions, progress=progress, settings=settings, artifacts=artifacts, notify_outbox=lambda: None
    )
    api = IngestionApi(
        collections=Collections(sessions=sessions, notify_outbox=lambda: None),
        documents=Documents(sessions=sessions, progress=progress, settings=settings, notify_outbox=lambda: None),
        progress=progress,
        dead_letters=DeadLetters(js=nats_client.jetstream(), pipeline=pipeline),
        artifacts=artifacts,
    )
    server = GrpcServer(port=0, host="127.0.0.1", signer=TEST_SIGNER)
    server.add(ingestion_pb2_grpc.add_IngestionServiceServicer_to_server, api, "parley.v1.IngestionService")
    await server.start()
    try:
        yield Ingestion(f"127.0.0.1:{server.port}", pipeline, writer)
    finally:
        await server.stop(0)


@pytest_asyncio.fixture(scope="module")
async def api(
    open_gateway: Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]], ingestion: Ingestion
) -> AsyncIterator[httpx.AsyncClient]:
    async with open_gateway(ingestion_target=ingestion.target) as client:
        yield client


async def new_key(sessions: db.Sessions, pepper: str) -> tuple[str, dict[str, str]]:
    key = "pk_" + uuid.uuid4().hex
    async with sessions.begin() as session:
        principal = await store.create_tenant_with_admin(
            session=session, tenant_name=f"t-{uuid.uuid4().hex[:8]}", key_hash=auth.hash_api_key(key, pepper=pepper)
        )
    return principal.tenant_id, {"Authorization": f"Bearer {key}"}


async def uploaded_manual(api: httpx.AsyncClient, headers: dict[str, str]) -> str:
    created = await api.post("/v1/collections", json={"name": "manuals"}, headers=headers)
    assert created.status_code == 201, created.text
    uploaded = await api.post(
        f"/v1/collections/{created.json()['id']}/documents",
        files={"file": ("guide.md", MANUAL, "text/markdown")},
        headers=headers,
    )
    assert uploaded.status_code == 202, uploaded.text
    return str(uploaded.json()["id"])


async def make_searchable(
    api: httpx.AsyncClient, ingestion: Ingestion, tenant_id: str, document_id: str, headers: dict[str, str]
) -> dict[str, object]:
    # As the worker would (another test module's worker may get there first: both are idempotent).
    await ingestion.pipeline.chunk_version(tenant_id=tenant_id, document_id=document_id, version=1)
    for _ in range(200):
        document = (await api.get(f"/v1/documents/{document_id}", headers=headers)).json()
        if document["status"] == "indexing":
            break
        await asyncio.sleep(0.05)
    await ingestion.pipeline.mark_indexed(tenant_id=tenant_id, document_id=document_id, version=1)
    fetched: dict[str, object] = (await api.get(f"/v1/documents/{document_id}", headers=headers)).json()
    return fetched


async def test_a_documents_artifacts_are_served_fresh_on_request_and_only_to_its_tenant(
    api: httpx.AsyncClient, ingestion: Ingestion, sessions: db.Sessions, pepper: str
) -> None:
    tenant_id, headers = await new_key(sessions, pepper)
    document_id = await uploaded_manual(api, headers)

    document = await make_searchable(api, ingestion, tenant_id, document_id, headers)

    assert (document["status"], document["analysis_state"]) == ("ready", None)
    stored = await api.get(f"/v1/documents/{document_id}/artifacts", headers=headers)
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"document_id": document_id, "artifacts": []}

    ingestion.writer.broke.add(tenant_id)
    refused = await api.get(f"/v1/documents/{document_id}/artifacts?fresh=true", headers=headers)
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "budget_exceeded"

    ingestion.writer.broke.discard(tenant_id)
    fresh = await api.get(f"/v1/documents/{document_id}/artifacts?fresh=true", headers=headers)
    assert fresh.status_code == 200, fresh.text
    body = fresh.json()
    assert [(item["kind"], item["key"]) for item in body["artifacts"]] == [
        ("scene_card", "0"),
        ("scene_card", "1"),
        ("outline", "outline"),
    ]
    card = body["artifacts"][1]
    assert card["content"] == {"heading": "Setup", "gist": "Install it, then run it."}
    assert (card["stale"], card["model"], card["document_version"], card["tokens"]) == (False, "test/first-line", 1, 5)
    assert card["updated_at"] and uuid.UUID(card["id"])

    only_outline = await api.get(f"/v1/documents/{document_id}/artifacts?kind=outline", headers=headers)
    assert [item["kind"] for item in only_outline.json()["artifacts"]] == ["outline"]
    unknown = await api.get(f"/v1/documents/{document_id}/artifacts?kind=poem", headers=headers)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["field"].startswith("kind")

    _, stranger = await new_key(sessions, pepper)
    hidden = await api.get(f"/v1/documents/{document_id}/artifacts?fresh=true", headers=stranger)
    assert hidden.status_code == 404
    assert set(hidden.json()["error"]) == {"code", "message", "request_id", "type", "param"}
