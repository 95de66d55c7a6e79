"""Prompt caching on the path users take: a conversation through the whole platform (gateway,
chat, retrieval, ingestion, usage) answered by Claude — the official SDK against the fake that
caches as Anthropic documents — and billed by usage-svc from what the fake reported.

The platform here says every turn after a conversation's first comes after a pause past the
5-minute cache (`PARLEY_CACHE_HOUR_AFTER_SECONDS=0`), so a conversation's first turn writes for 5
minutes and its later ones for an hour: both prices are on the ledger.
"""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from parley.kit.devstack import Platform
from tests.fakes.anthropic_server import FakeAnthropic
from tests.platforms import NO_RATE_LIMITS, admin_client, eventually, running_platform, sql

MODEL = "claude-sonnet-4-6"
# usage-svc's row for Sonnet 4.6, micro-USD per million tokens.
INPUT, OUTPUT, CACHE_READ, CACHE_WRITE, CACHE_WRITE_1H = 3_000_000, 15_000_000, 300_000, 3_750_000, 6_000_000
TOPICS = (
    "descaling the boiler",
    "grinding the beans",
    "steaming the milk",
    "cleaning the group head",
    "replacing the gasket",
    "tamping the coffee",
    "filling the water tank",
    "heating the cups",
    "backflushing the machine",
    "storing the beans",
    "adjusting the pressure",
    "changing the filter",
    "pouring latte art",
    "timing the shot",
    "warming the portafilter",
    "draining the drip tray",
    "calibrating the thermometer",
    "choosing the roast",
    "frothing oat milk",
    "travelling with the machine",
)
# Twenty sections of ~150 tokens: a search's ten best are well past Sonnet's 1,024-token minimum.
MANUAL = "# The espresso machine\n\n" + "\n\n".join(
    f"## {topic.capitalize()}\n\n"
    + " ".join(
        f"Step {n} of {topic}: follow the manual for {topic} closely, and note how {topic} changes the taste."
        for n in range(1, 7)
    )
    for topic in TOPICS
)


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, claude: FakeAnthropic) -> Iterator[Platform]:
    settings = {
        "PARLEY_EMBEDDING_PROVIDER": "local",
        "PARLEY_ANTHROPIC_API_KEY": claude.api_key,
        "PARLEY_ANTHROPIC_BASE_URL": claude.base_url,
        # Every later turn of a conversation counts as one after a pause: it writes for an hour.
        "PARLEY_CACHE_HOUR_AFTER_SECONDS": "0",
    }
    with running_platform(tmp_path_factory.mktemp("cache"), settings | NO_RATE_LIMITS) as started:
        yield started


@pytest.fixture(scope="module")
def api(platform: Platform) -> Iterator[httpx.Client]:
    with admin_client(platform, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def collection_id(api: httpx.Client) -> str:
    created = api.post("/v1/collections", json={"name": "espresso"})
    assert created.status_code == 201, created.text
    uploaded = api.post(
        f"/v1/collections/{created.json()['id']}/documents",
        files={"file": ("espresso.md", MANUAL.encode(), "text/markdown")},
    )
    assert uploaded.status_code == 202, uploaded.text

    def ready() -> bool:
        """the manual is searchable"""
        document = api.get(f"/v1/documents/{uploaded.json()['id']}").json()
        assert document["status"] != "failed", document
        return bool(document["status"] == "ready")

    eventually(ready, within=90)
    return str(created.json()["id"])


def ask(api: httpx.Client, message: str, **where: Any) -> dict[str, Any]:
    body = {"message": message, "provider": "anthropic", "model": MODEL, "max_tokens": 200, **where}
    answered = api.post("/v1/chat", json=body)
    assert answered.status_code == 200, answered.text
    return dict(answered.json())


def ledger(platform: Platform, conversation_id: str) -> list[tuple[int, ...]]:
    """usage-svc's chat events of the conversation, oldest first: tokens and what each was billed."""
    rows = sql(
        platform,
        "SELECT input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,"
        " cost_micros FROM usage.usage_events WHERE conversation_id = %s AND kind = 'chat' ORDER BY occurred_at",
        conversation_id,
    )
    return [tuple(row) for row in rows]


def price(usage: dict[str, int], *, hour: int) -> int:
    """Micro-USD at Sonnet's row, the writes that live an hour (`hour`) at 2x input, rounded up once."""
    scaled = (
        usage["input_tokens"] * INPUT
        + usage["output_tokens"] * OUTPUT
        + usage["cache_read_tokens"] * CACHE_READ
        + (usage["cache_write_tokens"] - hour) * CACHE_WRITE
        + hour * CACHE_WRITE_1H
    )
    return -(-scaled // 1_000_000)


def test_turn_two_reads_turn_one_from_the_cache_though_its_passages_differ_and_an_hour_costs_twice(
    api: httpx.Client, platform: Platform, collection_id: str
) -> None:
    first = ask(api, "How do I go about descaling the boiler?", collection_ids=[collection_id])
    conversation_id = first["conversation_id"]
    second = ask(api, "And what about frothing oat milk for latte art?", conversation_id=conversation_id)
    one, two = first["message"], second["message"]
    u1, u2 = one["usage"], two["usage"]

    # Turn 1 writes its whole prompt (the instructions, its passages, the question) for 5 minutes.
    assert u1["cache_read_tokens"] == 0 and u1["cache_write_tokens"] > 1_024
    assert u1["cache_write_1h_tokens"] == 0
    # Turn 2 found other passages, and sends them with its question after the conversation as it
    # was sent: everything turn 1 wrote is read back, and what is new is written for an hour.
    first_passages = {source["chunk_id"] for source in one["sources"]}
    sent_now = [s for s in two["sources"] if s["chunk_id"] not in first_passages]
    assert sent_now and min(s["index"] for s in sent_now) > max(s["index"] for s in one["sources"])
    assert dict((p["name"], p["tokens"]) for p in two["context_used"]["parts"])["passages"] > 0
    assert u2["cache_read_tokens"] == u1["cache_write_tokens"]
    assert u2["cache_write_tokens"] == u2["cache_write_1h_tokens"] > 0
    assert u2["input_tokens"] == 0
    assert two["context_used"]["cache_write_1h_tokens"] == u2["cache_write_1h_tokens"]

    # usage-svc's ledger holds what the fake reported, 1-hour writes at 2x input, 5-minute ones at 1.25x.
    def billed() -> list[tuple[int, ...]]:
        """both turns are on the ledger"""
        rows = ledger(platform, conversation_id)
        return rows if len(rows) == 2 else []

    (*tokens1, cost1), (*tokens2, cost2) = eventually(billed, within=90)
    fields = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens")
    assert tuple(tokens1) == tuple(u1[f] for f in fields) and tuple(tokens2) == tuple(u2[f] for f in fields)
    assert cost1 == price(u1, hour=0)
    assert cost2 == price(u2, hour=u2["cache_write_1h_tokens"]) > price(u2, hour=0)
    assert round(two["cost_usd"] * 1_000_000) == cost2  # the answer shows what the ledger billed
