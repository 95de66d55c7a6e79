"""Budgets per API key across the whole platform (the session's `make run`): the key a call is
made with rides the signed identity (kit.identity) from the gateway through chat-svc and
retrieval into usage-svc's events; the gateway then holds that key to its own budget while the
same person's other keys go on."""

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from parley.kit.devstack import Platform
from tests.platforms import eventually, sql
from tests.samples import NOTES


@pytest.fixture(scope="module")
def collection_id(api: httpx.Client) -> str:
    created = api.post("/v1/collections", json={"name": f"notes-{uuid.uuid4().hex[:6]}"})
    assert created.status_code == 201, created.text
    uploaded = api.post(
        f"/v1/collections/{created.json()['id']}/documents",
        files={"file": ("notes.md", NOTES.encode(), "text/markdown")},
    )
    assert uploaded.status_code == 202, uploaded.text

    def ready() -> bool:
        """the notes are searchable"""
        document = api.get(f"/v1/documents/{uploaded.json()['id']}").json()
        assert document["status"] != "failed", document
        return bool(document["status"] == "ready")

    eventually(ready)
    return str(created.json()["id"])


@pytest.fixture
def two_keys(api: httpx.Client, platform: Platform) -> Iterator[tuple[dict[str, Any], httpx.Client, httpx.Client]]:
    """Two keys of the admin: the first's record, and a client for each."""
    first = api.post("/v1/api-keys", json={"name": "ci"}).json()
    second = api.post("/v1/api-keys", json={"name": "laptop"}).json()
    clients = [
        httpx.Client(base_url=platform.gateway_url, headers={"Authorization": f"Bearer {key['key']}"}, timeout=30)
        for key in (first, second)
    ]
    try:
        yield first, clients[0], clients[1]
    finally:
        for client in clients:
            client.close()


def test_a_key_at_its_budget_is_refused_while_the_same_users_other_key_goes_on(
    api: httpx.Client,
    platform: Platform,
    collection_id: str,
    two_keys: tuple[dict[str, Any], httpx.Client, httpx.Client],
) -> None:
    key, with_key, with_other_key = two_keys
    ask = {"message": "Where are the diner scenes shot?", "collection_ids": [collection_id]}
    # A query of its own: a repeated one may be answered from the embedder's memory, unbilled.
    search = {"query": f"harbour cafe {uuid.uuid4().hex}", "collection_ids": [collection_id]}

    answered = with_key.post("/v1/chat", json=ask)
    assert answered.status_code == 200, answered.text
    assert with_key.post("/v1/search", json=search).status_code == 200

    # The turn's bill (chat-svc) and the query's embedding (retrieval) name the key.
    def billed_to_key() -> list[tuple[Any, ...]]:
        """the turn and the query are billed to the key"""
        return sql(
            platform,
            "SELECT kind, api_key_id FROM usage.usage_events WHERE api_key_id = %s ORDER BY kind",
            key["id"],
        )

    billed = eventually(lambda: len(billed_to_key()) >= 2 and billed_to_key())
    assert {kind for kind, _ in billed} >= {"chat", "embedding"}
    turn_bill = sql(
        platform,
        "SELECT api_key_id FROM usage.usage_events WHERE conversation_id = %s",
        answered.json()["conversation_id"],
    )
    assert turn_bill == [(key["id"],)]
    report = api.get("/v1/usage", params={"group_by": "api_key"})
    assert report.status_code == 200, report.text
    assert next(row for row in report.json()["rows"] if row["group"] == key["id"])["events"] == len(billed)

    # A zero budget of the key's own: what it spent (free, on the local model) is at its limit.
    capped = api.patch(f"/v1/api-keys/{key['id']}", json={"monthly_limit_usd": 0})
    assert capped.status_code == 200, capped.text
    assert capped.json()["monthly_limit_usd"] == 0.0

    for path, body in (("/v1/chat", ask), ("/v1/search", search)):
        refused = with_key.post(path, json=body)
        assert refused.status_code == 402, (path, refused.text)
        assert refused.json()["error"]["code"] == "budget_exceeded"
        assert "this API key's monthly budget" in refused.json()["error"]["message"]
    assert with_other_key.post("/v1/chat", json=ask).status_code == 200
    assert with_other_key.post("/v1/search", json=search).status_code == 200
