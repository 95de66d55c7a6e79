"""Artifacts through ingestion's real gRPC server, worker and job queue, on real PostgreSQL and
NATS: a screenplay growing from empty to partial to analyzed, edits making exactly the artifacts
they touch stale, regeneration in the job and on request, a spent budget, a crash mid-analysis,
tenancy. Retrieval is not running: the tests announce `docs.chunks.indexed` as it would.

The screenplay is built here: scene n is numbered #n#; ANN speaks in every scene, BOB in the even
ones, CAROL in every third.
"""

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from nats.aio.client import Client as NatsClient

from parley.ingestion.artifacts import carded, growth, plan
from parley.ingestion.config import Settings
from parley.ingestion.models import AnalysisState
from parley.ingestion.screenplay import fountain_sections
from parley.ingestion.screenplay_reports import card_key
from parley.ingestion.store import ArtifactRecord
from parley.kit.identity import Identity
from parley.kit.testing import signed
from parley.v1 import events_pb2, ingestion_pb2, ingestion_pb2_grpc

Stub = ingestion_pb2_grpc.IngestionServiceStub
# An analysis is several jobs, each through the outbox and the worker's queues.
MAX_POLLS = 300
MODEL = "test/scripted"


def who(tenant_id: str, api_key_id: str = "") -> tuple[tuple[str, str], ...]:
    return signed(
        Identity(tenant_id=tenant_id, user_id="writer-1", request_id=str(uuid.uuid4()), api_key_id=api_key_id)
    )


def scene(number: int, *, edit: str = "") -> str:
    speakers = ["ANN", *(["BOB"] if number % 2 == 0 else []), *(["CAROL"] if number % 3 == 0 else [])]
    lines = [f"INT. ROOM {number} - DAY #{number}#", "", f"Room {number} is quiet.{edit}", ""]
    for name in speakers:
        lines += [name, f"Line {number} for {name.title()}.", ""]
    return "\n".join(lines)


def screenplay(scenes: int, *, edits: dict[int, str] | None = None, without: frozenset[int] = frozenset()) -> bytes:
    body = "\n".join(
        scene(number, edit=(edits or {}).get(number, "")) for number in range(1, scenes + 1) if number not in without
    )
    return f"Title: Growth\n\n{body}".encode()


async def index(stub: Stub, js_client: NatsClient, tenant_id: str, document_id: str, version: int) -> None:
    """Wait for the worker to chunk the version, then say it is searchable, as retrieval does."""
    await wait_for(stub, tenant_id, document_id, version, ingestion_pb2.DOCUMENT_STATUS_INDEXING)
    await js_client.jetstream().publish(
        "docs.chunks.indexed",
        events_pb2.ChunksIndexed(tenant_id=tenant_id, document_id=document_id, version=version).SerializeToString(),
        headers={"Nats-Msg-Id": f"indexed:{document_id}:{version}"},
    )


async def wait_for(
    stub: Stub, tenant_id: str, document_id: str, version: int, status: ingestion_pb2.DocumentStatus
) -> ingestion_pb2.Document:
    for _ in range(MAX_POLLS):
        document = await stub.GetDocument(
            ingestion_pb2.GetDocumentRequest(document_id=document_id), metadata=who(tenant_id)
        )
        if document.version == version and document.status == status:
            return document
        await asyncio.sleep(0.05)
    raise AssertionError(f"version {version} stayed {ingestion_pb2.DocumentStatus.Name(document.status)}")


async def upload_ready(stub: Stub, nats: NatsClient, tenant_id: str, content: bytes) -> ingestion_pb2.Document:
    collection = await stub.CreateCollection(
        ingestion_pb2.CreateCollectionRequest(name=f"Scripts {uuid.uuid4()}"), metadata=who(tenant_id)
    )
    header = ingestion_pb2.DocumentHeader(
        collection_id=collection.id, content_type="text/x-fountain", filename="growth.fountain"
    )
    document = await stub.IngestDocument(
        iter(
            [ingestion_pb2.IngestDocumentRequest(header=header), ingestion_pb2.IngestDocumentRequest(content=content)]
        ),
        metadata=who(tenant_id),
    )
    await index(stub, nats, tenant_id, document.id, 1)
    return await wait_for(stub, tenant_id, document.id, 1, ingestion_pb2.DOCUMENT_STATUS_READY)


async def new_version_ready(
    stub: Stub, nats: NatsClient, tenant_id: str, document_id: str, content: bytes
) -> ingestion_pb2.Document:
    header = ingestion_pb2.VersionHeader(document_id=document_id, filename="growth.fountain")
    update = await stub.UpdateDocument(
        iter(
            [ingestion_pb2.UpdateDocumentRequest(header=header), ingestion_pb2.UpdateDocumentRequest(content=content)]
        ),
        metadata=who(tenant_id),
    )
    version = update.document.version
    await index(stub, nats, tenant_id, document_id, version)
    return await wait_for(stub, tenant_id, document_id, version, ingestion_pb2.DOCUMENT_STATUS_READY)


async def artifacts(
    stub: Stub, tenant_id: str, document_id: str, *kinds: str, fresh: bool = False, api_key_id: str = ""
) -> dict[tuple[str, str], ingestion_pb2.Artifact]:
    response = await stub.GetArtifacts(
        ingestion_pb2.GetArtifactsRequest(document_id=document_id, kinds=kinds, fresh=fresh),
        metadata=who(tenant_id, api_key_id),
    )
    return {(artifact.kind, artifact.key): artifact for artifact in response.artifacts}


def cards(found: dict[tuple[str, str], ingestion_pb2.Artifact]) -> list[str]:
    return [key for kind, key in found if kind == "scene_card"]


def stale(found: dict[tuple[str, str], ingestion_pb2.Artifact]) -> set[tuple[str, str]]:
    return {name for name, artifact in found.items() if artifact.stale}


async def test_a_screenplay_grows_from_empty_to_partial_to_analyzed(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str
) -> None:
    document = await upload_ready(ingestion, nats_client, tenant_id, screenplay(2))

    assert document.analysis_state == "empty"
    assert await artifacts(ingestion, tenant_id, document.id) == {}

    partial = await new_version_ready(ingestion, nats_client, tenant_id, document.id, screenplay(5))

    assert partial.analysis_state == "partial"
    found = await artifacts(ingestion, tenant_id, document.id)
    assert cards(found) == ["1", "2", "3", "4", "5"]
    assert set(found) == {("scene_card", key) for key in "12345"}
    card = found["scene_card", "3"]
    assert json.loads(card.content_json) == {"heading": "INT. ROOM 3 - DAY", "summary": "Line 3 for Carol."}
    assert (card.model, card.document_version, card.stale) == ("test/scripted", 2, False)
    assert card.tokens > 0

    # Watch the third version from its upload: the analysis is a step of its own, counted.
    header = ingestion_pb2.VersionHeader(document_id=document.id, filename="growth.fountain")
    await ingestion.UpdateDocument(
        iter(
            [
                ingestion_pb2.UpdateDocumentRequest(header=header),
                ingestion_pb2.UpdateDocumentRequest(content=screenplay(31)),
            ]
        ),
        metadata=who(tenant_id),
    )
    steps: list[ingestion_pb2.DocumentProgress] = []
    async for progress in ingestion.WatchDocument(
        ingestion_pb2.WatchDocumentRequest(document_id=document.id), metadata=who(tenant_id), timeout=30
    ):
        steps.append(progress)
        if progress.status == ingestion_pb2.DOCUMENT_STATUS_INDEXING:
            await index(ingestion, nats_client, tenant_id, document.id, 3)
    analyzed = await ingestion.GetDocument(
        ingestion_pb2.GetDocumentRequest(document_id=document.id), metadata=who(tenant_id)
    )

    assert analyzed.analysis_state == "analyzed"
    assert analyzed.status == ingestion_pb2.DOCUMENT_STATUS_READY
    analyzing = [step for step in steps if step.status == ingestion_pb2.DOCUMENT_STATUS_ANALYZING]
    # 26 new cards (8 a job), the outline with the plot threads, 3 sheets, the coverage report:
    # 32 in 7 jobs.
    assert [(step.done, step.total) for step in analyzing] == [
        (0, 32),
        (8, 32),
        (16, 32),
        (24, 32),
        (26, 32),
        (28, 32),
        (31, 32),
    ]
    assert [step.message for step in analyzing[::4]] == [
        "writing scene cards 0/32",
        "writing the outline and plot threads 26/32",
    ]
    assert analyzing[-2].message == "writing character sheets 28/32"
    assert analyzing[-1].message == "writing the coverage report 31/32"
    assert steps[-1].status == ingestion_pb2.DOCUMENT_STATUS_READY
    found = await artifacts(ingestion, tenant_id, document.id)
    assert cards(found) == [str(number) for number in range(1, 32)]
    assert {key for kind, key in found if kind == "character_sheet"} == {"ANN", "BOB", "CAROL"}
    assert ("outline", "outline") in found and ("plot_thread", "a-plot") in found
    assert json.loads(found["character_sheet", "CAROL"].content_json)["scenes"] == [str(n) for n in range(3, 32, 3)]
    # The coverage report is written last, from the artifacts the batches before it kept.
    read = json.loads(found["coverage", "coverage"].content_json)["read"]
    assert {"outline:outline", "plot_thread:a-plot", "character_sheet:CAROL", "scene_card:31"} <= set(read)
    # The five scenes the second version already had keep their cards as written then.
    assert {found["scene_card", key].document_version for key in "12345"} == {2}
    assert found["scene_card", "6"].document_version == 3
    assert not stale(found)
    # Only what the filter names.
    assert set(await artifacts(ingestion, tenant_id, document.id, "outline", "plot_thread")) == {
        ("outline", "outline"),
        ("plot_thread", "a-plot"),
    }


async def test_editing_one_scene_rewrites_its_card_only_and_a_cut_scene_loses_its_card(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str, artifact_writer: Any
) -> None:
    document = await upload_ready(ingestion, nats_client, tenant_id, screenplay(6))
    before = await artifacts(ingestion, tenant_id, document.id)
    assert cards(before) == ["1", "2", "3", "4", "5", "6"]

    await new_version_ready(ingestion, nats_client, tenant_id, document.id, screenplay(6, edits={2: " A clock ticks."}))

    after = await artifacts(ingestion, tenant_id, document.id)
    assert after["scene_card", "2"].updated_at.ToDatetime() > before["scene_card", "2"].updated_at.ToDatetime()
    assert after["scene_card", "2"].document_version == 2
    assert json.loads(after["scene_card", "2"].content_json)["summary"] == "Line 2 for Bob."
    untouched = [key for key in cards(after) if key != "2"]
    assert [after["scene_card", key].updated_at for key in untouched] == [
        before["scene_card", key].updated_at for key in untouched
    ]
    assert artifact_writer.called(tenant_id)[-1] == ("scene_card", ("2",))

    cut = await new_version_ready(
        ingestion,
        nats_client,
        tenant_id,
        document.id,
        screenplay(6, edits={2: " A clock ticks."}, without=frozenset({4})),
    )

    assert cut.version == 3
    assert cards(await artifacts(ingestion, tenant_id, document.id)) == ["1", "2", "3", "5", "6"]
    assert artifact_writer.called(tenant_id)[-1] == ("scene_card", ("2",))


async def test_two_scenes_printed_with_one_number_get_a_card_each_and_keep_the_number(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str, artifact_writer: Any
) -> None:
    # A script that numbers two scenes 12 (a draft that renumbered by hand): each is a scene of its own.
    body = "\n".join([scene(11), scene(12), scene(12, edit=" Rain again."), scene(13)])
    sections = fountain_sections(body)
    assert [(section.scene.number, section.scene.key) for section in sections if section.scene] == [
        ("11", "11"),
        ("12", "12"),
        ("12", "12 (2)"),
        ("13", "13"),
    ]

    document = await upload_ready(ingestion, nats_client, tenant_id, f"Title: Twice\n\n{body}".encode())

    found = await artifacts(ingestion, tenant_id, document.id)
    assert cards(found) == ["11", "12", "12 (2)", "13"]
    assert artifact_writer.called(tenant_id)[-1] == ("scene_card", ("11", "12", "12 (2)", "13"))

    # Editing the second 12 rewrites its card only.
    edited = "\n".join([scene(11), scene(12), scene(12, edit=" Rain, and thunder."), scene(13)])
    await new_version_ready(ingestion, nats_client, tenant_id, document.id, f"Title: Twice\n\n{edited}".encode())
    assert artifact_writer.called(tenant_id)[-1] == ("scene_card", ("12 (2)",))
    assert cards(await artifacts(ingestion, tenant_id, document.id)) == ["11", "12", "12 (2)", "13"]


async def test_edits_make_sheets_stale_after_3_scenes_and_the_outline_after_5_and_fresh_rewrites_them(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str, artifact_writer: Any
) -> None:
    writer = artifact_writer
    document = await upload_ready(ingestion, nats_client, tenant_id, screenplay(31))
    made = await artifacts(ingestion, tenant_id, document.id)
    assert not stale(made) and len(made) == 31 + 1 + 3 + 1 + 1  # …, the coverage report
    # From here the budget is spent: nothing is rewritten, so what went stale stays visible.
    writer.broke.add(tenant_id)

    # Scenes 1, 3, 5: ANN speaks in all three, CAROL in one, BOB in none.
    edits = {1: " Rain.", 3: " Rain.", 5: " Rain."}
    second = await new_version_ready(ingestion, nats_client, tenant_id, document.id, screenplay(31, edits=edits))

    assert second.status == ingestion_pb2.DOCUMENT_STATUS_READY  # searchable all the same, not failed
    assert "artifacts paused: the budget is spent" in second.message
    found = await artifacts(ingestion, tenant_id, document.id)
    assert stale(found) == {("scene_card", "1"), ("scene_card", "3"), ("scene_card", "5"), ("character_sheet", "ANN")}
    refused = ingestion.GetArtifacts(
        ingestion_pb2.GetArtifactsRequest(document_id=document.id, fresh=True), metadata=who(tenant_id)
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await refused
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # Two more (7 and 9): five changed scenes make the outline, plot threads and coverage report
    # stale; CAROL has spoken in two of them (3, 9), still below three.
    edits |= {7: " Rain.", 9: " Rain."}
    await new_version_ready(ingestion, nats_client, tenant_id, document.id, screenplay(31, edits=edits))

    found = await artifacts(ingestion, tenant_id, document.id)
    assert stale(found) == {
        *(("scene_card", key) for key in "13579"),
        ("character_sheet", "ANN"),
        ("outline", "outline"),
        ("plot_thread", "a-plot"),
        ("coverage", "coverage"),
    }

    writer.broke.discard(tenant_id)
    billed_before = len(writer.keys_billed)
    fresh = await artifacts(ingestion, tenant_id, document.id, fresh=True, api_key_id="key-1")

    assert not stale(fresh)
    # Written on request: billed to the key that asked (the pipeline's own work, to none).
    assert set(writer.keys_billed[billed_before:]) == {"key-1"}
    assert set(writer.keys_billed[:billed_before]) == {""}
    rewritten = {name for name, artifact in fresh.items() if artifact.document_version == 3}
    assert rewritten == stale(found)
    kept = set(fresh) - rewritten
    assert all(fresh[name].updated_at == made[name].updated_at for name in kept)
    document = await ingestion.GetDocument(
        ingestion_pb2.GetDocumentRequest(document_id=document.id), metadata=who(tenant_id)
    )
    assert "paused" not in document.message


async def test_an_analysis_that_crashes_mid_way_finishes_once_each(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str, artifact_writer: Any
) -> None:
    # The first batch's call fails as a killed worker would: the job is redelivered and goes on.
    artifact_writer.crash_once.add(tenant_id)

    document = await upload_ready(ingestion, nats_client, tenant_id, screenplay(12))

    found = await artifacts(ingestion, tenant_id, document.id)
    assert cards(found) == [str(number) for number in range(1, 13)]
    assert artifact_writer.called(tenant_id) == [
        ("scene_card", tuple(str(number) for number in range(1, 9))),
        ("scene_card", tuple(str(number) for number in range(9, 13))),
    ]


async def test_a_manual_is_never_analyzing_and_gets_section_cards_and_an_outline_when_asked(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str
) -> None:
    collection = await ingestion.CreateCollection(
        ingestion_pb2.CreateCollectionRequest(name="Manuals"), metadata=who(tenant_id)
    )
    header = ingestion_pb2.DocumentHeader(collection_id=collection.id, content_type="text/markdown", filename="m.md")
    content = b"# Guide\n\nRead me.\n\n## Setup\n\nInstall it.\n"
    document = await ingestion.IngestDocument(
        iter(
            [ingestion_pb2.IngestDocumentRequest(header=header), ingestion_pb2.IngestDocumentRequest(content=content)]
        ),
        metadata=who(tenant_id),
    )
    await index(ingestion, nats_client, tenant_id, document.id, 1)
    ready = await wait_for(ingestion, tenant_id, document.id, 1, ingestion_pb2.DOCUMENT_STATUS_READY)

    assert ready.analysis_state == ""
    assert await artifacts(ingestion, tenant_id, document.id) == {}
    found = await artifacts(ingestion, tenant_id, document.id, fresh=True)
    assert list(found) == [("scene_card", "0"), ("scene_card", "1"), ("outline", "outline")]


async def test_another_tenants_artifacts_are_not_found_and_unknown_kinds_are_refused(
    ingestion: Stub, nats_client: NatsClient, tenant_id: str
) -> None:
    document = await upload_ready(ingestion, nats_client, tenant_id, screenplay(3))
    stranger = who(f"other-{uuid.uuid4()}")

    calls = {
        "stranger": ingestion.GetArtifacts(
            ingestion_pb2.GetArtifactsRequest(document_id=document.id, fresh=True), metadata=stranger
        ),
        "no such document": ingestion.GetArtifacts(
            ingestion_pb2.GetArtifactsRequest(document_id=str(uuid.uuid4())), metadata=who(tenant_id)
        ),
        "unknown kind": ingestion.GetArtifacts(
            ingestion_pb2.GetArtifactsRequest(document_id=document.id, kinds=["poem"]), metadata=who(tenant_id)
        ),
    }
    codes = {}
    for name, call in calls.items():
        try:
            await call
            codes[name] = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            codes[name] = error.code()

    assert codes == {
        "stranger": grpc.StatusCode.NOT_FOUND,
        "no such document": grpc.StatusCode.NOT_FOUND,
        "unknown kind": grpc.StatusCode.INVALID_ARGUMENT,
    }
    assert len(await artifacts(ingestion, tenant_id, document.id)) == 3


def settings() -> Settings:
    return Settings(env="test", database_url="postgresql://unused", nats_url="nats://unused")


def long_scene(action_lines: int) -> bytes:
    action = "\n\n".join(f"Line {n} of action." for n in range(action_lines))
    return f"INT. HALL - DAY\n\n{action}\n".encode()


@pytest.mark.parametrize(
    ("content", "before", "state"),
    [
        (screenplay(2), AnalysisState.NONE, AnalysisState.EMPTY),
        (screenplay(3), AnalysisState.NONE, AnalysisState.PARTIAL),
        (screenplay(30), AnalysisState.NONE, AnalysisState.ANALYZED),
        # One scene of ~5 pages (each action line and the blank before it: 2 of 55 lines a page),
        # of ~11 pages, of ~62 pages: pages count as well as scenes.
        (long_scene(135), AnalysisState.NONE, AnalysisState.EMPTY),
        (long_scene(300), AnalysisState.NONE, AnalysisState.PARTIAL),
        (long_scene(1_700), AnalysisState.NONE, AnalysisState.ANALYZED),
        # A script cut short keeps its state.
        (screenplay(2), AnalysisState.ANALYZED, AnalysisState.ANALYZED),
    ],
)
def test_the_analysis_state_follows_scenes_or_pages_and_never_goes_back(
    content: bytes, before: AnalysisState, state: AnalysisState
) -> None:
    sections = fountain_sections(content.decode())

    assert growth(sections, settings=settings(), before=before) == state


def test_an_analyzed_script_whose_writer_found_no_plot_thread_is_not_asked_again() -> None:
    sections = fountain_sections(screenplay(30).decode())
    now = datetime.now(UTC)

    def written(kind: str, key: str, sha256: str = "") -> ArtifactRecord:
        return ArtifactRecord(
            id=uuid.uuid4(),
            tenant_id="t",
            document_id=uuid.uuid4(),
            kind=kind,
            key=key,
            content={},
            tokens=1,
            model=MODEL,
            document_version=1,
            source_sha256=sha256,
            changed_scenes=0,
            stale=False,
            created_at=now,
            updated_at=now,
        )

    held = [
        *(
            written("scene_card", card_key(section), section.content_sha256)
            for section in carded(sections, screenplay=True)
        ),
        written("outline", "outline"),
        *(written("character_sheet", name) for name in ("ANN", "BOB", "CAROL")),
        written("coverage", "coverage"),
    ]

    left = plan(sections=sections, held=held, screenplay=True, state=AnalysisState.ANALYZED, settings=settings())

    assert left == []
