"""Crashes mid-work lose nothing: a service killed with SIGKILL catches up from JetStream when
it comes back, a dependency that is down is a clear error, never a half-stored turn, and the
launcher brings a crashed service back while the rest of the platform keeps answering."""

import os
import signal
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from parley.kit.devstack import Platform
from tests.platforms import eventually


@pytest.fixture
def collection_id(api: httpx.Client) -> Iterator[str]:
    created = api.post("/v1/collections", json={"name": f"faults-{uuid.uuid4().hex[:8]}"})
    assert created.status_code == 201
    yield created.json()["id"]


def test_a_document_uploaded_while_retrieval_is_down_is_indexed_when_it_returns(
    api: httpx.Client, platform: Platform, collection_id: str
) -> None:
    platform.kill("retrieval")
    try:
        uploaded = api.post(
            f"/v1/collections/{collection_id}/documents",
            files={"file": ("boiler.txt", b"The pressure relief valve opens at 1.8 bar.", "text/plain")},
        )
        assert uploaded.status_code == 202
        document_id = uploaded.json()["id"]
        # Chunked, announced, and waiting in JetStream for an indexer that is not there.
        eventually(lambda: api.get(f"/v1/documents/{document_id}").json()["status"] == "indexing")
    finally:
        platform.restart("retrieval")
    eventually(lambda: api.get(f"/v1/documents/{document_id}").json()["status"] == "ready")
    answer = api.post(
        "/v1/chat", json={"message": "When does the relief valve open?", "collection_ids": [collection_id]}
    )
    assert "1.8 bar" in answer.json()["message"]["content"]


def test_chat_while_usage_is_down_is_refused_and_stores_nothing(
    api: httpx.Client, platform: Platform, collection_id: str
) -> None:
    def conversations() -> int:
        with psycopg.connect(platform.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM chat.conversations").fetchone()
        assert row is not None
        return int(row[0])

    before = conversations()
    platform.kill("usage")
    try:
        refused = api.post("/v1/chat", json={"message": "Anything?", "collection_ids": [collection_id]})
    finally:
        platform.restart("usage")
    # No budget hold, no turn: the meter is never bypassed.
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "unavailable"
    # usage-svc may have placed the hold before it died: the turn's row stays until its lease lapses,
    # then the sweep releases any hold by the turn's key and removes the conversation made for it.
    eventually(lambda: conversations() == before, within=60)
    assert api.post("/v1/chat", json={"message": "Anything?", "collection_ids": [collection_id]}).status_code == 200


def test_a_crashed_service_is_restarted_by_the_launcher_and_only_its_routes_fail_meanwhile(
    api: httpx.Client, platform: Platform
) -> None:
    chat = platform.children["chat"]
    assert chat.process is not None
    restarts_before = chat.restarts
    os.kill(chat.process.pid, signal.SIGKILL)  # a crash: not `platform.kill`, which holds it down

    # Down: its routes answer 503 in the one error shape; the others do not notice.
    refused = eventually(lambda: (answer := api.get("/v1/conversations")).status_code == 503 and answer, within=20)
    assert refused.json()["error"]["code"] == "unavailable"
    assert refused.json()["error"]["request_id"] == refused.headers["X-Request-ID"]
    assert api.get("/v1/collections").status_code == 200
    assert api.get("/readyz").status_code == 200

    # Back, without anyone asking.
    eventually(lambda: api.get("/v1/conversations").status_code == 200, within=60)
    assert chat.restarts == restarts_before + 1


def test_an_ingest_job_that_keeps_failing_is_a_dead_letter_an_admin_can_replay(
    api: httpx.Client, platform: Platform, collection_id: str
) -> None:
    title = f"refused-{uuid.uuid4().hex[:8]}"
    # A real fault in real infrastructure: the database refuses to let this document start parsing.
    with psycopg.connect(platform.database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION ingestion.refuse_parsing() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'injected fault: the disk is on fire'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_parsing BEFORE UPDATE ON ingestion.documents FOR EACH ROW "
            f"WHEN (NEW.status = 'PARSING' AND NEW.title = '{title}') EXECUTE FUNCTION ingestion.refuse_parsing()"
        )
    try:
        uploaded = api.post(
            f"/v1/collections/{collection_id}/documents",
            files={"file": ("valves.txt", b"The relief valve opens at 2.4 bar.", "text/plain")},
            data={"title": title, "priority": "urgent"},
        )
        assert uploaded.status_code == 202, uploaded.text
        document_id = uploaded.json()["id"]

        # Three tries (2 s and 4 s apart), then parked; the document says where and why meanwhile.
        failed = eventually(
            lambda: (doc := api.get(f"/v1/documents/{document_id}").json())["status"] == "failed" and doc,
            within=60,
        )
        assert failed["failed_stage"] == "parsing"
        assert "injected fault: the disk is on fire" in failed["error"]

        listed = api.get("/v1/admin/dead-letters")
        assert listed.status_code == 200, listed.text
        [letter] = [letter for letter in listed.json()["data"] if letter["document_id"] == document_id]
        assert letter["subject"] == "jobs.ingest.urgent"
        assert letter["deliveries"] == 3
        assert "injected fault" in letter["reason"]
    finally:
        with psycopg.connect(platform.database_url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER IF EXISTS refuse_parsing ON ingestion.documents")
            conn.execute("DROP FUNCTION IF EXISTS ingestion.refuse_parsing()")

    # The fault is fixed: the operator replays the job and the document becomes searchable.
    replayed = api.post(f"/v1/admin/dead-letters/{letter['seq']}/replay")
    assert replayed.status_code == 200, replayed.text
    ready = eventually(lambda: (doc := api.get(f"/v1/documents/{document_id}").json())["status"] == "ready" and doc)
    assert (ready["error"], ready["failed_stage"], ready["chunk_count"]) == (None, None, 1)
    assert all(letter["document_id"] != document_id for letter in api.get("/v1/admin/dead-letters").json()["data"])
    # Replayed once: it is no longer parked.
    assert api.post(f"/v1/admin/dead-letters/{letter['seq']}/replay").status_code == 404


def test_ingestion_killed_while_chunking_finishes_the_document_after_restart_without_duplicates(
    api: httpx.Client, platform: Platform, collection_id: str
) -> None:
    # ~1.4 MB of Markdown, 1,000 sections: a couple of seconds of chunking to be killed in.
    sections = [
        f"## Valve {n}\n\n"
        + " ".join(f"Valve {n} opens at {n % 7}.{n % 10} bar when line {j} is hot." for j in range(30))
        for n in range(1000)
    ]
    uploaded = api.post(
        f"/v1/collections/{collection_id}/documents",
        files={"file": ("valves.md", "\n\n".join(sections).encode(), "text/markdown")},
    )
    assert uploaded.status_code == 202, uploaded.text
    document_id = uploaded.json()["id"]
    seen = eventually(
        lambda: (
            (status := api.get(f"/v1/documents/{document_id}").json()["status"]) in ("chunking", "indexing") and status
        ),
        within=60,
    )
    assert seen == "chunking", "chunking finished before the test could kill the worker"
    platform.kill("ingestion")
    assert api.get(f"/v1/documents/{document_id}").status_code != 200  # really down: nothing answers
    platform.restart("ingestion")

    # The unfinished job comes back (its ack wait ran out with the killed worker) and finishes.
    ready = eventually(
        lambda: (doc := api.get(f"/v1/documents/{document_id}").json())["status"] in ("ready", "failed") and doc,
        within=120,
    )
    assert ready["status"] == "ready", ready
    # Two chunks per section (each is ~400 tokens, the limit is 300), each stored and indexed once.
    assert ready["chunk_count"] == 2000
    with psycopg.connect(platform.database_url) as conn:
        stored = conn.execute(
            "SELECT count(*), count(DISTINCT chunk_id) FROM ingestion.chunks WHERE document_id = %s",
            (document_id,),
        ).fetchone()
        indexed = conn.execute(
            "SELECT count(*), count(DISTINCT chunk_id) FROM retrieval.chunks WHERE document_id = %s",
            (document_id,),
        ).fetchone()
    assert stored == (2000, 2000)
    assert indexed == (2000, 2000)
