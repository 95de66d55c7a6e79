"""The writers' room through the whole platform, offline (`local` provider and writer): a short
screenplay uploaded, its breakdown sheet as JSON and CSV, a question a tool answers exactly,
routed by `local` to `get_character_scenes` over the real stored scenes, with the script's scene
index in the prompt's global part; and the same tools over MCP at /mcp with the official `mcp`
SDK's client (an API key required)."""

import asyncio
import csv
import io
import time
import uuid
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent

from parley.kit.devstack import Platform

SCRIPT = """Title: The River Witch

EXT. RIVER - DAY

Edward wades into the brown water, grinning at the boy on the bank.

EDWARD
The biggest fish in this river was never caught.

WILL
You say that about every river.

INT. WITCH'S HOUSE - NIGHT

Candles everywhere. The Witch turns, her glass eye catching the light.

THE WITCH
You want to know how you die.

EDWARD
Only if it's a good story.

EXT. ROAD - DUSK

Will drives alone, the radio off.

WILL
He never told me one true thing.

INT. HOSPITAL ROOM - NIGHT

Edward, thin now. The Witch's glass eye sits on the bedside table.

THE WITCH (V.O.)
This is not how you go.

EDWARD
Tell me how it ends, Will.
"""


def _ready(api: httpx.Client, document_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        document = api.get(f"/v1/documents/{document_id}").json()
        assert document["status"] != "failed", document["error"]
        if document["status"] == "ready":
            return
        time.sleep(0.2)
    raise AssertionError(f"document {document_id} not ready")


def _script(api: httpx.Client) -> tuple[str, str]:
    collection = api.post("/v1/collections", json={"name": f"room-{uuid.uuid4().hex[:6]}"}).json()
    uploaded = api.post(
        f"/v1/collections/{collection['id']}/documents",
        files={"file": ("river-witch.fountain", SCRIPT.encode(), "text/x-fountain")},
    )
    assert uploaded.status_code == 202, uploaded.text
    _ready(api, uploaded.json()["id"])
    return collection["id"], uploaded.json()["id"]


def test_a_screenplays_breakdown_sheet_as_json_and_csv_and_a_question_answered_by_a_tool(api: httpx.Client) -> None:
    collection_id, document_id = _script(api)

    sheet = api.get(f"/v1/documents/{document_id}/breakdown")
    assert sheet.status_code == 200, sheet.text
    rows: list[dict[str, Any]] = sheet.json()["scenes"]
    assert [(r["scene"], r["int_ext"], r["location"], r["time_of_day"]) for r in rows] == [
        ("1", "EXT", "RIVER", "DAY"),
        ("2", "INT", "WITCH'S HOUSE", "NIGHT"),
        ("3", "EXT", "ROAD", "DUSK"),
        ("4", "INT", "HOSPITAL ROOM", "NIGHT"),
    ]
    assert rows[1]["cast"] == ["THE WITCH", "EDWARD"] and all(r["eighths"] >= 1 and r["start_page"] >= 1 for r in rows)
    assert rows[0]["synopsis"] == "Edward wades into the brown water, grinning at the boy on the bank."

    as_csv = api.get(f"/v1/documents/{document_id}/breakdown", params={"format": "csv"})
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(as_csv.text)))
    assert table[0] == ["scene", "int_ext", "location", "time_of_day", "eighths", "start_page", "cast", "synopsis"]
    assert table[2][:4] == ["2", "INT", "WITCH'S HOUSE", "NIGHT"] and table[2][6] == "THE WITCH; EDWARD"

    asked = api.post("/v1/chat", json={"message": "Which scenes feature the witch?", "collection_ids": [collection_id]})
    assert asked.status_code == 200, asked.text
    message = asked.json()["message"]
    used = message["context_used"]
    assert [call["name"] for call in used["tool_calls"]] == ["get_character_scenes"] and used["tool_rounds"] == 1
    assert "THE WITCH speaks in 2 of 4 scenes" in message["content"]
    assert "2 | INT. WITCH'S HOUSE - NIGHT" in message["content"]
    assert {part["name"]: part["tokens"] for part in used["parts"]}["global"] > 0, "the scene index is in the prompt"


def test_mcp_lists_the_tools_runs_one_on_a_real_script_and_refuses_a_caller_without_a_key(
    api: httpx.Client, platform: Platform
) -> None:
    collection_id, _ = _script(api)
    assert platform.secrets is not None
    url = f"{platform.gateway_url}/mcp"

    async def session(key: str | None) -> tuple[list[str], str, bool]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            listed = await client.list_tools()
            ran = await client.call_tool(
                "get_character_scenes", {"collection_ids": [collection_id], "character": "the witch"}
            )
        text = "".join(block.text for block in ran.content if isinstance(block, TextContent))
        return [tool.name for tool in listed.tools], text, bool(ran.is_error)

    names, text, failed = asyncio.run(session(platform.secrets.admin_api_key))
    assert {"get_scene", "get_character_scenes", "list_scenes", "get_coverage", "search", "ask"} <= set(names)
    assert not failed and text.startswith("THE WITCH speaks in 2 of 4 scenes")

    # Without a key the SDK's client fails to connect: the front door answered 401 before MCP.
    with pytest.raises(Exception):  # noqa: B017 (the SDK wraps the HTTP error in task-group groups)
        asyncio.run(session(None))
    bare = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=30)
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "unauthenticated"
