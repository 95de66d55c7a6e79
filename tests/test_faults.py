"""Crashes mid-work lose nothing: a service killed with SIGKILL catches up from JetStream when
it comes back, a dependency that is down is a clear error, never a half-stored turn, and the
launcher brings a crashed service back while the rest of the platform keeps answering."""

import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from parley.kit.devstack import Platform


def wait_for(check: Any, *, within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not true after {within:.0f}s")
        time.sleep(0.25)
    return value


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
        wait_for(lambda: api.get(f"/v1/documents/{document_id}").json()["status"] == "indexing")
    finally:
        platform.restart("retrieval")
    wait_for(lambda: api.get(f"/v1/documents/{document_id}").json()["status"] == "ready")
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
    assert conversations() == before
    assert api.post("/v1/chat", json={"message": "Anything?", "collection_ids": [collection_id]}).status_code == 200


def test_a_crashed_service_is_restarted_by_the_launcher_and_only_its_routes_fail_meanwhile(
    api: httpx.Client, platform: Platform
) -> None:
    chat = platform.children["chat"]
    assert chat.process is not None
    restarts_before = chat.restarts
    os.kill(chat.process.pid, signal.SIGKILL)  # a crash: not `platform.kill`, which holds it down

    # Down: its routes answer 503 in the one error shape; the others do not notice.
    refused = wait_for(lambda: (answer := api.get("/v1/conversations")).status_code == 503 and answer, within=20)
    assert refused.json()["error"]["code"] == "unavailable"
    assert refused.json()["error"]["request_id"] == refused.headers["X-Request-ID"]
    assert api.get("/v1/collections").status_code == 200
    assert api.get("/readyz").status_code == 200

    # Back, without anyone asking.
    wait_for(lambda: api.get("/v1/conversations").status_code == 200, within=60)
    assert chat.restarts == restarts_before + 1
