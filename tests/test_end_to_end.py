"""The spine, end to end over HTTP: collection → upload → chunked and indexed → streamed,
cited answer → both messages stored → one usage event recorded exactly once.

Everything here is real: the embedded PostgreSQL and NATS, every service as its own process,
gRPC between them, JetStream events. Assertions are what a user (and an operator looking at
the database) would check.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.gateway import auth, store
from parley.kit import db
from parley.kit.devstack import Platform
from tests.platforms import admin_client, eventually, running_platform, sql

MANUAL = """# Espresso machine manual

## Descaling

Descale the boiler every 200 shots with citric acid dissolved in warm water.
Run the solution through the group head until the tank is empty, then rinse twice.

## Grinding

Use a burr grinder set to a fine grind; the shot should take 25 to 30 seconds.
"""


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    id: str
    data: Any


def read_sse(response: httpx.Response) -> list[SseEvent]:
    """Parse a text/event-stream body into its events (comments and pings skipped)."""
    events: list[SseEvent] = []
    fields: dict[str, list[str]] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:
                data = "\n".join(fields["data"])
                events.append(
                    SseEvent(fields.get("event", ["message"])[0], fields.get("id", [""])[0], json.loads(data))
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))
    return events


@pytest.fixture(scope="module")
def ready_document(api: httpx.Client, platform: Platform) -> dict[str, Any]:
    created = api.post("/v1/collections", json={"name": f"manuals-{uuid.uuid4().hex[:6]}", "description": "kitchen"})
    assert created.status_code == 201, created.text
    collection = created.json()

    uploaded = api.post(
        f"/v1/collections/{collection['id']}/documents",
        files={"file": ("espresso.md", MANUAL.encode(), "text/markdown")},
    )
    assert uploaded.status_code == 202, uploaded.text
    assert uploaded.json()["status"] in ("queued", "chunking", "indexing", "ready")

    def document_is_ready() -> dict[str, Any] | None:
        document = api.get(f"/v1/documents/{uploaded.json()['id']}").json()
        assert document["status"] != "failed", document
        return document if document["status"] == "ready" else None

    document = eventually(document_is_ready)
    return {"collection": collection, "document": document}


def test_upload_is_chunked_and_indexed(ready_document: dict[str, Any], platform: Platform) -> None:
    document = ready_document["document"]
    assert document["title"] == "Espresso machine manual"
    assert document["content_type"] == "text/markdown"
    assert document["chunk_count"] >= 1
    assert document["token_count"] > 0

    stored = sql(
        platform, "SELECT heading, text, token_count FROM ingestion.chunks WHERE document_id = %s", document["id"]
    )
    assert len(stored) == document["chunk_count"]
    assert any("citric acid" in text for _, text, _ in stored)
    indexed = sql(
        platform,
        "SELECT count(*), count(embedding) FROM retrieval.chunks JOIN retrieval.chunk_embeddings USING (chunk_id)"
        " WHERE document_id = %s",
        document["id"],
    )
    assert indexed == [(document["chunk_count"], document["chunk_count"])]


def test_streamed_chat_cites_the_document_and_is_metered(
    api: httpx.Client, platform: Platform, ready_document: dict[str, Any]
) -> None:
    collection, document = ready_document["collection"], ready_document["document"]
    question = {
        "message": "How often should I descale the boiler?",
        "collection_ids": [collection["id"]],
        "stream": True,
    }
    with api.stream("POST", "/v1/chat", json=question) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_sse(response)

    kinds = [event.event for event in events]
    assert kinds[-3:] == ["sources", "usage", "end"], kinds
    assert set(kinds[:-3]) == {"delta"}
    assert [int(event.id) for event in events] == list(range(1, len(events) + 1))

    answer = "".join(event.data["text"] for event in events if event.event == "delta")
    assert "200 shots" in answer and "[1]" in answer
    sources = events[-3].data["sources"]
    assert sources[0]["index"] == 1
    assert sources[0]["document_id"] == document["id"]
    assert sources[0]["document_title"] == "Espresso machine manual"
    usage = events[-2].data
    assert usage["model"] == "local" and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    end = events[-1].data
    assert end["finish_reason"] == "stop"

    conversation = api.get(f"/v1/conversations/{end['conversation_id']}").json()
    assert conversation["title"] == "How often should I descale the boiler?"
    assert [m["role"] for m in conversation["messages"]] == ["user", "assistant"]
    assert conversation["messages"][0]["content"] == question["message"]
    assert conversation["messages"][1]["content"] == answer
    assert conversation["messages"][1]["id"] == end["assistant_message_id"]
    assert conversation["messages"][1]["sources"][0]["document_id"] == document["id"]

    def usage_recorded() -> list[tuple[Any, ...]]:
        return sql(
            platform,
            "SELECT input_tokens, output_tokens, success FROM usage.usage_events WHERE conversation_id = %s",
            end["conversation_id"],
        )

    assert eventually(usage_recorded) == [(usage["input_tokens"], usage["output_tokens"], True)]
    time.sleep(1.0)  # a duplicate delivery, if there were one, would land by now
    assert len(usage_recorded()) == 1

    # A time without a zone is read as UTC.
    assert api.get("/v1/usage", params={"since": "2024-01-01T00:00:00"}).status_code == 200
    report = api.get("/v1/usage", params={"group_by": "model"}).json()
    total = report["total"]
    assert total["events"] >= 1
    local = next(row for row in report["rows"] if row["group"] == "local")
    assert local["input_tokens"] >= usage["input_tokens"]
    assert total["total_tokens"] == sum(row["total_tokens"] for row in report["rows"])


def test_a_second_turn_continues_the_conversation(api: httpx.Client, ready_document: dict[str, Any]) -> None:
    first = api.post(
        "/v1/chat",
        json={"message": "What grind should I use?", "collection_ids": [ready_document["collection"]["id"]]},
    )
    assert first.status_code == 200, first.text
    assert "fine grind" in first.json()["message"]["content"]
    conversation_id = first.json()["conversation_id"]
    stored = api.get(f"/v1/conversations/{conversation_id}").json()["messages"][-1]
    assert first.json()["message"]["created_at"] is not None  # a whole answer has its stored time
    assert datetime.fromisoformat(first.json()["message"]["created_at"]) == datetime.fromisoformat(stored["created_at"])

    second = api.post(
        "/v1/chat", json={"message": "And how long should a shot take?", "conversation_id": conversation_id}
    )
    assert second.status_code == 200, second.text
    assert "25 to 30 seconds" in second.json()["message"]["content"]
    messages = api.get(f"/v1/conversations/{conversation_id}").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]


def test_another_tenants_ids_are_not_found(
    api: httpx.Client, platform: Platform, ready_document: dict[str, Any]
) -> None:
    assert platform.secrets is not None
    other_key = "pk_" + uuid.uuid4().hex

    async def make_other_tenant() -> None:
        engine = db.create_engine(platform.database_url)
        try:
            async with db.session_factory(engine).begin() as session:
                await store.create_tenant_with_admin(
                    session=session,
                    tenant_name=f"other-{uuid.uuid4().hex[:6]}",
                    key_hash=auth.hash_api_key(other_key, pepper=platform.secrets.api_key_pepper),
                )
        finally:
            await engine.dispose()

    asyncio.run(make_other_tenant())
    other = httpx.Client(base_url=platform.gateway_url, headers={"Authorization": f"Bearer {other_key}"})
    collection_id = ready_document["collection"]["id"]
    document_id = ready_document["document"]["id"]
    for path in (
        f"/v1/collections/{collection_id}",
        f"/v1/documents/{document_id}",
        f"/v1/documents/{document_id}/sections",
        f"/v1/documents/{document_id}/characters",
    ):
        response = other.get(path)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    asked = other.post("/v1/chat", json={"message": "descale?", "collection_ids": [collection_id]})
    assert asked.status_code == 404, asked.text
    assert other.get("/v1/collections").json()["data"] == []


def test_errors_have_one_shape_with_a_request_id(api: httpx.Client, platform: Platform) -> None:
    anonymous = httpx.get(f"{platform.gateway_url}/v1/collections")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    assert anonymous.json()["error"]["request_id"] == anonymous.headers["X-Request-ID"]

    invalid = api.post("/v1/chat", json={"message": "", "collection_ids": []})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["details"][0]["field"] == "message"

    missing = api.get(f"/v1/documents/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["error"]["request_id"]

    binary = api.post(
        f"/v1/collections/{uuid.uuid4()}/documents", files={"file": ("x.pdf", b"%PDF-1.7", "application/pdf")}
    )
    assert binary.status_code in (400, 404)
    assert set(binary.json()["error"]) == {"code", "message", "request_id", "type", "param"}


def test_a_client_that_reconnects_resumes_after_its_last_event(
    api: httpx.Client, ready_document: dict[str, Any]
) -> None:
    question = {
        "message": "What should I descale with?",
        "collection_ids": [ready_document["collection"]["id"]],
        "stream": True,
    }
    with api.stream("POST", "/v1/chat", json=question) as response:
        first = read_sse(response)
        conversation_id, turn_id = response.headers["X-Conversation-Id"], response.headers["X-Turn-Id"]
    path = f"/v1/conversations/{conversation_id}/turns/{turn_id}/events"
    with api.stream("GET", path, headers={"Last-Event-ID": first[1].id}) as response:
        resumed = read_sse(response)
    assert [(e.id, e.event, e.data) for e in resumed] == [(e.id, e.event, e.data) for e in first[2:]]
    for not_a_turn in ("a b", ">", "*", str(uuid.uuid4())):  # the last: a turn that never existed
        response = api.get(f"/v1/conversations/{conversation_id}/turns/{not_a_turn}/events")
        assert response.status_code == 404, not_a_turn


def test_progress_events_and_pages(api: httpx.Client, ready_document: dict[str, Any]) -> None:
    with api.stream("GET", f"/v1/documents/{ready_document['document']['id']}/events") as response:
        progress = read_sse(response)
    assert progress[-1].event == "progress" and progress[-1].data["status"] == "ready"

    for message in ("descale?", "grind?"):
        asked = api.post("/v1/chat", json={"message": message, "collection_ids": [ready_document["collection"]["id"]]})
        assert asked.status_code == 200
    first = api.get("/v1/conversations", params={"page_size": 1}).json()
    second = api.get("/v1/conversations", params={"page_size": 1, "page_token": first["next_page_token"]}).json()
    assert first["next_page_token"] and len(first["data"]) == len(second["data"]) == 1
    assert first["data"][0]["id"] != second["data"][0]["id"]
    assert first["data"][0]["messages"] is None  # lists carry no messages; GET one conversation for them


def test_a_watcher_that_connects_right_after_the_upload_sees_every_step(
    api: httpx.Client, ready_document: dict[str, Any]
) -> None:
    uploaded = api.post(
        f"/v1/collections/{ready_document['collection']['id']}/documents",
        # curl and browsers declare a .md file as octet-stream: the name says what it is.
        files={
            "file": (
                "steps.md",
                f"# Steps\n\nQueued first, ready last ({uuid.uuid4()}).\n".encode(),
                "application/octet-stream",
            )
        },
    )
    assert uploaded.status_code == 202, uploaded.text
    assert uploaded.json()["content_type"] == "text/markdown"

    with api.stream("GET", f"/v1/documents/{uploaded.json()['id']}/events") as response:
        progress = read_sse(response)

    assert [event.event for event in progress] == ["progress"] * 5
    assert [event.data["status"] for event in progress] == ["queued", "parsing", "chunking", "indexing", "ready"]
    assert progress[-1].data["chunk_count"] == 1 and progress[-1].data["version"] == 1
    # Each step says how far it is and what it does.
    assert (progress[2].data["total"], progress[2].data["message"]) == (1, "splitting 1 sections into chunks")
    assert (progress[-1].data["done"], progress[-1].data["total"]) == (1, 1)


def test_a_large_document_is_chunked_and_indexed(api: httpx.Client, ready_document: dict[str, Any]) -> None:
    sections = [
        f"## Part {n}\n\n" + " ".join(f"Paragraph {n}.{p} covers valve {n * 1000 + p} in detail." for p in range(40))
        for n in range(1_200)
    ]
    manual = ("# Service manual\n\n" + "\n\n".join(sections)).encode()
    # Past NATS's default 1 MiB message size, which the platform's events are held to here: its chunk
    # set travels in parts that retrieval puts together.
    assert len(manual) > 2 * 1024 * 1024
    uploaded = api.post(
        f"/v1/collections/{ready_document['collection']['id']}/documents",
        files={"file": ("service.md", manual, "text/markdown")},
    )
    assert uploaded.status_code == 202, uploaded.text

    def ready() -> dict[str, Any] | None:
        document = api.get(f"/v1/documents/{uploaded.json()['id']}").json()
        assert document["status"] != "failed", document["error"]
        return document if document["status"] == "ready" else None

    document = eventually(ready, within=120)
    assert document["chunk_count"] >= 1_200
    answer = api.post(
        "/v1/chat",
        json={
            "message": "Which paragraph covers valve 731017?",
            "collection_ids": [ready_document["collection"]["id"]],
        },
    )
    assert "Paragraph 731.17" in answer.json()["message"]["content"]


SCREENPLAYS = Path(__file__).parents[1] / ".." / "shared" / "data" / "screenplays"


@pytest.mark.skipif(not SCREENPLAYS.is_dir(), reason=f"the shared test data is not at {SCREENPLAYS}")
def test_a_screenplay_upload_has_scenes_and_reports(
    api: httpx.Client, platform: Platform, ready_document: dict[str, Any]
) -> None:
    script = (SCREENPLAYS / "Brick-and-Steel.fountain").read_bytes()
    uploaded = api.post(
        f"/v1/collections/{ready_document['collection']['id']}/documents",
        # What a browser declares for a .fountain file: ingestion tells the type from the content.
        files={"file": ("Brick-and-Steel.fountain", script, "application/octet-stream")},
    )
    assert uploaded.status_code == 202, uploaded.text
    assert (uploaded.json()["content_type"], uploaded.json()["title"]) == ("text/x-fountain", "BRICK & STEEL")
    document_id = uploaded.json()["id"]

    def ready() -> dict[str, Any] | None:
        document = api.get(f"/v1/documents/{document_id}").json()
        assert document["status"] != "failed", document["error"]
        return document if document["status"] == "ready" else None

    eventually(ready)
    # The bytes are kept as uploaded (the file mixes CRLF and LF).
    assert sql(platform, "SELECT content FROM ingestion.document_versions WHERE document_id = %s", document_id) == [
        (script,)
    ]

    sections: list[dict[str, Any]] = []
    token = None
    while True:
        page = api.get(
            f"/v1/documents/{document_id}/sections", params={"page_size": 4, **({"page_token": token} if token else {})}
        ).json()
        sections += page["data"]
        token = page["next_page_token"]
        if token is None:
            break
    # Checked by hand reading the file: a title page, then 6 INT/EXT headings and 2 forced ones.
    assert [section["kind"] for section in sections] == ["title_page"] + ["scene"] * 8
    assert [section["ordinal"] for section in sections] == list(range(9))
    assert sections[0]["scene"] is None
    assert sections[1]["heading"] == "EXT. BRICK'S PATIO - DAY" and sections[1]["page"] == 1
    assert sections[1]["scene"] == {
        "number": "1",
        "int_ext": "EXT",
        "location": "BRICK'S PATIO",
        "time_of_day": "DAY",
        "characters": ["STEEL", "BRICK"],
    }

    characters = api.get(f"/v1/documents/{document_id}/characters")
    assert characters.status_code == 200, characters.text
    by_name = {row["name"]: row for row in characters.json()["characters"]}
    assert characters.json()["characters"][0]["name"] == "STEEL"
    assert (by_name["STEEL"]["scenes"], by_name["STEEL"]["dialogue_blocks"]) == (5, 9)
    assert (by_name["BRICK"]["scenes"], by_name["BRICK"]["dialogue_blocks"]) == (2, 4)
    assert by_name["BRICK"]["most_shared_with"] == "STEEL"

    pacing = api.get(f"/v1/documents/{document_id}/pacing").json()
    assert (pacing["scenes"], pacing["int_ext"], pacing["day_night"]) == (
        8,
        {"EXT": 4, "INT": 2, "": 2},
        {"day": 6, "night": 0, "other": 2},
    )
    assert len(pacing["per_scene"]) == 8 and all(scene["eighths"] >= 1 for scene in pacing["per_scene"])

    not_a_script = api.get(f"/v1/documents/{ready_document['document']['id']}/characters")
    assert not_a_script.status_code == 409
    assert "not a screenplay" in not_a_script.json()["error"]["message"]

    # 8 scenes: the script has grown to `partial`, and ready means its scene cards were written
    # (offline, extracted: the platform runs the `local` writer), one per scene, by number.
    assert api.get(f"/v1/documents/{document_id}").json()["analysis_state"] == "partial"
    artifacts = api.get(f"/v1/documents/{document_id}/artifacts")
    assert artifacts.status_code == 200, artifacts.text
    cards = artifacts.json()["artifacts"]
    assert [(card["kind"], card["key"]) for card in cards] == [("scene_card", str(number)) for number in range(1, 9)]
    assert {(card["model"], card["stale"], card["document_version"]) for card in cards} == {
        ("local/extractive", False, 1)
    }
    assert cards[0]["content"]["characters"] == ["STEEL", "BRICK"] and 0 < cards[0]["tokens"] <= 200


@pytest.mark.parametrize(
    ("filename", "content", "reason"),
    [
        ("scan.pdf", b"%PDF-1.4\n%%EOF garbage", "PDF cannot be read"),
        ("picture.fountain", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary"),
        ("broken.fdx", b'<?xml version="1.0"?><FinalDraft><Content>', "not well-formed"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_and_stores_nothing(
    api: httpx.Client, platform: Platform, ready_document: dict[str, Any], filename: str, content: bytes, reason: str
) -> None:
    refused = api.post(
        f"/v1/collections/{ready_document['collection']['id']}/documents",
        files={"file": (filename, content, "application/octet-stream")},
    )
    assert refused.status_code == 400, refused.text
    assert reason in refused.json()["error"]["message"]
    assert sql(platform, "SELECT count(*) FROM ingestion.documents WHERE filename = %s", filename) == [(0,)]


PILOT = """Title: The Pilot

INT. DINER - NIGHT

ANNA
Coffee. Black.

BEN
You always say that.

EXT. PARKING LOT - DAY

ANNA
Keys.
"""


def test_a_new_version_keeps_the_id_and_reindexes_only_what_changed(
    api: httpx.Client, platform: Platform, ready_document: dict[str, Any]
) -> None:
    uploaded = api.post(
        f"/v1/collections/{ready_document['collection']['id']}/documents",
        files={"file": ("pilot.fountain", PILOT.encode(), "application/octet-stream")},
    )
    assert uploaded.status_code == 202, uploaded.text
    document_id = uploaded.json()["id"]

    def ready_at(version: int) -> Callable[[], dict[str, Any] | None]:
        def ready() -> dict[str, Any] | None:
            document = api.get(f"/v1/documents/{document_id}").json()
            assert document["status"] != "failed", document["error"]
            return document if document["status"] == "ready" and document["version"] == version else None

        return ready

    eventually(ready_at(1))
    indexed_before = dict(
        sql(platform, "SELECT heading, chunk_id FROM retrieval.chunks WHERE document_id = %s", document_id)
    )

    # BEN has a new line in the diner; the title page and the parking lot are word for word the same.
    edited = PILOT.replace("You always say that.", "Decaf, then?")
    updated = api.put(f"/v1/documents/{document_id}", files={"file": ("pilot.fountain", edited.encode())})
    assert updated.status_code == 202, updated.text
    assert (updated.json()["outcome"], updated.json()["document"]["id"]) == ("new_version", document_id)
    assert updated.json()["document"]["version"] == 2
    assert updated.json()["sections"] == {"added": 0, "changed": 1, "removed": 0, "unchanged": 2}

    eventually(ready_at(2))
    indexed_after = dict(
        sql(platform, "SELECT heading, chunk_id FROM retrieval.chunks WHERE document_id = %s", document_id)
    )
    assert indexed_after.keys() == indexed_before.keys()
    assert indexed_after["EXT. PARKING LOT - DAY"] == indexed_before["EXT. PARKING LOT - DAY"]
    assert indexed_after["INT. DINER - NIGHT"] != indexed_before["INT. DINER - NIGHT"]
    words = {
        row["name"]: row["words"] for row in api.get(f"/v1/documents/{document_id}/characters").json()["characters"]
    }
    assert words["BEN"] == 2

    again = api.put(f"/v1/documents/{document_id}", files={"file": ("pilot.fountain", edited.encode())})
    assert again.status_code == 200, again.text
    assert (again.json()["outcome"], again.json()["document"]["version"]) == ("unchanged", 2)
    assert api.get(f"/v1/documents/{document_id}").json()["version"] == 2


GARDEN = """# Vegetable garden

## Tomatoes

Tomatoes need full sun, a stake to climb and deep watering twice a week once the fruit sets.
"""


@pytest.fixture(scope="module")
def minilm_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A platform of its own with retrieval's default embedder, all-MiniLM-L6-v2 (the session's
    platform runs the instant hashing one)."""
    with running_platform(tmp_path_factory.mktemp("parley-minilm"), {}) as started, admin_client(started) as client:
        yield client


def test_search_finds_passages_by_meaning_with_the_real_model(minilm_api: httpx.Client) -> None:
    api = minilm_api
    created = api.post("/v1/collections", json={"name": "home"})
    assert created.status_code == 201, created.text
    collection_id = created.json()["id"]
    ids = []
    for name, content in (("espresso.md", MANUAL), ("garden.md", GARDEN)):
        uploaded = api.post(
            f"/v1/collections/{collection_id}/documents", files={"file": (name, content.encode(), "text/markdown")}
        )
        assert uploaded.status_code == 202, uploaded.text
        ids.append(uploaded.json()["id"])

    def both_ready() -> bool:
        return all(api.get(f"/v1/documents/{document_id}").json()["status"] == "ready" for document_id in ids)

    eventually(both_ready)
    espresso = ids[0]

    # No word of the question is in the manual: only a semantic model finds it.
    by_meaning = api.post(
        "/v1/search",
        json={"query": "removing limescale from a coffee maker", "collection_ids": [collection_id], "mode": "vector"},
    )
    assert by_meaning.status_code == 200, by_meaning.text
    assert by_meaning.json()["data"][0]["document_id"] == espresso

    by_words = api.post("/v1/search", json={"query": "citric acid", "collection_ids": [collection_id]})
    assert by_words.status_code == 200, by_words.text
    top = by_words.json()["data"][0]
    assert top["document_id"] == espresso
    assert "<mark>citric</mark> <mark>acid</mark>" in top["snippet"]


def test_a_local_edit_reads_around_the_open_section_and_the_conversation_exports(
    api: httpx.Client, ready_document: dict[str, Any]
) -> None:
    first = api.post(
        "/v1/chat",
        json={"message": "What grind should I use?", "collection_ids": [ready_document["collection"]["id"]]},
    )
    assert first.status_code == 200, first.text
    answer = first.json()["message"]
    assert answer["context_used"]["intent"] == "question" and answer["context_used"]["retrieval"] == "semantic"
    section = answer["sources"][0]

    edit = api.post(
        "/v1/chat",
        json={
            "message": "Rewrite this section so it reads more simply",
            "conversation_id": first.json()["conversation_id"],
            "current_section_id": section["chunk_id"],
        },
    )
    assert edit.status_code == 200, edit.text
    used = edit.json()["message"]["context_used"]
    assert (used["intent"], used["intent_source"], used["retrieval"]) == ("local_edit", "keywords", "positional")
    parts = {part["name"]: part["tokens"] for part in used["parts"]}
    assert parts["local"] > 0 and parts["conversation"] > 0
    cited = [(source["document_id"], source["chunk_id"]) for source in edit.json()["message"]["sources"]]
    # The section itself is the local part, not a passage; its neighbours are.
    assert section["chunk_id"] not in {chunk_id for _, chunk_id in cited}
    assert any(document_id == section["document_id"] for document_id, _ in cited)

    conversation_id = first.json()["conversation_id"]
    exported = api.get(f"/v1/conversations/{conversation_id}/export")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/markdown")
    assert "## You — " in exported.text and "Rewrite this section so it reads more simply" in exported.text
    as_json = api.get(f"/v1/conversations/{conversation_id}/export", params={"format": "json"}).json()
    assert [message["role"] for message in as_json["messages"]] == ["user", "assistant", "user", "assistant"]
    assert as_json["messages"][-1]["context_used"]["intent"] == "local_edit"
