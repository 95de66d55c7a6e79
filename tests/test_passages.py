"""A citation's passage, whole, through the whole platform (gateway → retrieval-svc): a source or
a search hit carries the first 280 characters; `GET /v1/documents/{id}/passages/{chunk_id}` gives
the text the answer was given, for the caller's tenant only."""

import uuid
from typing import Any

import httpx
import pytest

from parley.kit.devstack import Platform
from tests.platforms import eventually
from tests.samples import GRINDER


def _ready(api: httpx.Client, document_id: str) -> None:
    eventually(
        lambda: api.get(f"/v1/documents/{document_id}").json()["status"] == "ready",
        within=60,
        what="the document became ready",
    )


@pytest.fixture(scope="module")
def cited(api: httpx.Client) -> dict[str, Any]:
    collection = api.post("/v1/collections", json={"name": f"grinders-{uuid.uuid4().hex[:6]}"}).json()
    uploaded = {}
    for name, text in (("grinder.md", GRINDER), ("other.md", "# Other\n\nNothing about burrs here.\n")):
        made = api.post(
            f"/v1/collections/{collection['id']}/documents", files={"file": (name, text.encode(), "text/markdown")}
        )
        assert made.status_code == 202, made.text
        _ready(api, made.json()["id"])
        uploaded[name] = made.json()["id"]
    found = api.post("/v1/search", json={"query": "never wash the burrs", "collection_ids": [collection["id"]]})
    assert found.status_code == 200, found.text
    hit = next(hit for hit in found.json()["data"] if hit["document_id"] == uploaded["grinder.md"])
    return {"hit": hit, "document_id": uploaded["grinder.md"], "other_id": uploaded["other.md"]}


def test_a_passage_is_given_whole(api: httpx.Client, cited: dict[str, Any]) -> None:
    hit = cited["hit"]
    passage = api.get(f"/v1/documents/{cited['document_id']}/passages/{hit['chunk_id']}")
    assert passage.status_code == 200, passage.text
    body = passage.json()
    assert len(body["text"]) > 280 and body["text"].rstrip().endswith("never wash the burrs with water.")
    assert body["chunk_id"] == hit["chunk_id"] and body["heading"] == hit["heading"]
    assert body["document_title"] == "Grinder manual" and body["token_count"] > 0 and body["scene_number"] is None


def test_a_passage_of_another_document_or_none_at_all_is_404(api: httpx.Client, cited: dict[str, Any]) -> None:
    chunk_id = cited["hit"]["chunk_id"]
    for path in (
        f"/v1/documents/{cited['other_id']}/passages/{chunk_id}",
        f"/v1/documents/{cited['document_id']}/passages/{uuid.uuid4()}",
        f"/v1/documents/{cited['document_id']}/passages/{'x' * 5000}",
    ):
        missing = api.get(path)
        assert missing.status_code == 404, (path[:120], missing.text)
        assert missing.json()["error"]["code"] == "not_found" and missing.json()["error"]["request_id"]


def test_another_tenant_s_passage_is_404(platform: Platform, api: httpx.Client, cited: dict[str, Any]) -> None:
    made = api.post("/v1/tenants", json={"name": f"rival-{uuid.uuid4().hex[:6]}", "owner_name": "Rita"})
    assert made.status_code == 201, made.text
    rival = {"Authorization": f"Bearer {made.json()['api_key']['key']}"}
    path = f"/v1/documents/{cited['document_id']}/passages/{cited['hit']['chunk_id']}"
    refused = httpx.get(f"{platform.gateway_url}{path}", headers=rival, timeout=30)
    assert refused.status_code == 404, refused.text
    assert api.get(path).status_code == 200  # still there for its own tenant
