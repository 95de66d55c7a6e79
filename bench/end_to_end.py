"""The whole platform over HTTP, as a client sees it: started exactly as `make run` starts it
(`parley.kit.devstack.Platform`: embedded PostgreSQL + NATS, every service a process), on free
ports on 127.0.0.1, in a temporary folder, and always stopped at the end.

Measured:
- upload → `ready` seconds per document (chunked by ingestion, indexed by retrieval);
- streamed chats (`POST /v1/chat`, `"stream": true`): time to the response headers, to the
  first `delta` event and to the `end` event, median and p95;
- non-streamed chats: the whole answer's latency;
- a keyword-ish question (a fault code) end to end, and retrieval's `Search` alone over gRPC
  in each mode (keyword, vector, hybrid), to see what retrieval costs inside a turn;
- concurrency: 1 and then 4 clients each asking 10 streamed questions back to back: turns/s.
"""

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg

from bench._common import Table, median, ms, p95
from bench.corpus import markdown_document
from parley.kit.devstack import Platform, Ports
from parley.v1 import retrieval_pb2, retrieval_pb2_grpc

MANUAL = """# Espresso machine manual

## Descaling

Descale the boiler every 200 shots with citric acid dissolved in warm water.
Run the solution through the group head until the tank is empty, then rinse twice.

## Grinding

Use a burr grinder set to a fine grind; the shot should take 25 to 30 seconds.

## Fault codes

Fault code PX-4711 means the flow meter is blocked: clean the inlet screen and restart.
Fault code PX-0815 means the boiler thermostat is open: let the machine cool for an hour.
"""
QUESTIONS = (
    "How often should I descale the boiler?",
    "What grind should I use?",
    "How long should a shot take?",
    "How do I rinse after descaling?",
    "What should I inspect on the group head gasket?",
)
KEYWORD_QUESTION = "What does fault code PX-4711 mean?"
READY_WITHIN = 180.0
POLL_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """Seconds from sending the request: headers, first delta, end; and whether it ended well."""

    headers: float
    first_delta: float
    end: float
    ok: bool
    answer: str


def stream_chat(client: httpx.Client, body: dict[str, Any]) -> StreamTiming:
    """One streamed turn, its SSE parsed line by line as it arrives."""
    started = time.perf_counter()
    headers = first_delta = end = float("nan")
    ok, answer, event = False, [], "message"
    with client.stream("POST", "/v1/chat", json={**body, "stream": True}) as response:
        headers = time.perf_counter() - started
        if response.status_code != 200:
            response.read()
            return StreamTiming(headers, first_delta, time.perf_counter() - started, False, response.text[:200])
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event == "delta":
                if first_delta != first_delta:  # still NaN
                    first_delta = time.perf_counter() - started
                answer.append(line)
            elif not line:
                if event in ("end", "error"):
                    end = time.perf_counter() - started
                    ok = event == "end"
                    break
                event = "message"
    return StreamTiming(headers, first_delta, end, ok, "".join(answer))


def chat_whole(client: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = client.post("/v1/chat", json={**body, "stream": False})
    elapsed = time.perf_counter() - started
    return elapsed, (response.json() if response.status_code == 200 else {"error": response.text[:200]})


def upload_until_ready(client: httpx.Client, collection_id: str, name: str, text: str) -> tuple[float, dict[str, Any]]:
    """Seconds from sending the upload until GET /v1/documents/{id} says `ready` (polled every 20 ms)."""
    started = time.perf_counter()
    uploaded = client.post(
        f"/v1/collections/{collection_id}/documents", files={"file": (name, text.encode(), "text/markdown")}
    )
    if uploaded.status_code != 202:
        raise RuntimeError(f"upload of {name} failed: {uploaded.status_code} {uploaded.text[:300]}")
    document_id = uploaded.json()["id"]
    deadline = started + READY_WITHIN
    while time.perf_counter() < deadline:
        document = client.get(f"/v1/documents/{document_id}").json()
        if document["status"] == "ready":
            return time.perf_counter() - started, document
        if document["status"] == "failed":
            raise RuntimeError(f"{name} failed to ingest: {document}")
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"{name} not ready after {READY_WITHIN:.0f}s")


@contextmanager
def running_platform(settings: Mapping[str, str] | None = None) -> Iterator[tuple[Platform, float]]:
    """A fresh platform in a temporary folder (with these PARLEY_ settings, e.g. a provider's key),
    and the seconds its start took; stopped and removed after."""
    folder = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PARLEY_")}
    environ.update(settings or {})
    platform = Platform(folder, ports=Ports.free(), environ=environ)
    try:
        started = time.perf_counter()
        platform.start()
        yield platform, time.perf_counter() - started
    finally:
        platform.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _row(table: Table, name: str, samples: list[float], errors: int = 0) -> None:
    table.add(name, len(samples), ms(median(samples)), ms(p95(samples)), ms(min(samples)), ms(max(samples)), errors)


def _columns() -> tuple[str, ...]:
    return ("measure", "n", "median ms", "p95 ms", "min ms", "max ms", "errors")


def run(*, quick: bool = False) -> list[Table]:
    """Starts the platform, uploads, chats, and returns the tables; the platform is always stopped."""
    n_docs, n_large, n_stream, n_whole, n_search, per_client = (3, 1, 8, 5, 10, 3) if quick else (6, 3, 30, 15, 30, 10)
    with running_platform() as (platform, start_seconds):
        assert platform.secrets is not None
        headers = {"Authorization": f"Bearer {platform.secrets.admin_api_key}"}
        with httpx.Client(base_url=platform.gateway_url, headers=headers, timeout=60) as client:
            return _measure(platform, client, start_seconds, n_docs, n_large, n_stream, n_whole, n_search, per_client)


def _measure(
    platform: Platform,
    client: httpx.Client,
    start_seconds: float,
    n_docs: int,
    n_large: int,
    n_stream: int,
    n_whole: int,
    n_search: int,
    per_client: int,
) -> list[Table]:
    created = client.post("/v1/collections", json={"name": f"bench-{uuid.uuid4().hex[:6]}", "description": "bench"})
    created.raise_for_status()
    collection_id = created.json()["id"]

    # Uploads, one at a time: the small manual, then several ~10 KB documents, then ~200 KB ones.
    ingest = Table("end_to_end — ingestion (upload → ready)", ("document", "n", "chunks", "median s", "p95 s", "max s"))
    manual_seconds, _ = upload_until_ready(client, collection_id, "espresso.md", MANUAL)
    ingest.add("manual, 0.5 KB", 1, "-", f"{manual_seconds:.2f}", "-", "-")
    small: list[float] = []
    chunks = 0
    for i in range(n_docs):
        text = markdown_document(10_000, seed=100 + i, title=f"Service note {i}")
        seconds, document = upload_until_ready(client, collection_id, f"note-{i}.md", text)
        small.append(seconds)
        chunks = document["chunk_count"]
    ingest.add(
        "~10 KB Markdown", n_docs, f"~{chunks}", f"{median(small):.2f}", f"{p95(small):.2f}", f"{max(small):.2f}"
    )
    large: list[float] = []
    for i in range(n_large):
        text = markdown_document(200_000, seed=7 + i, title=f"Service manual {i}")
        seconds, document = upload_until_ready(client, collection_id, f"manual-{i}.md", text)
        large.append(seconds)
        chunks = document["chunk_count"]
    ingest.add(
        "~200 KB Markdown", n_large, f"~{chunks}", f"{median(large):.2f}", f"{p95(large):.2f}", f"{max(large):.2f}"
    )
    ingest.notes.append(f"platform cold start (embedded PostgreSQL + NATS + 5 services): {start_seconds:.1f} s")
    ingest.notes.append(f"status polled every {POLL_SECONDS * 1000:.0f} ms, so figures carry up to that much slack")

    # Chats, each in a new conversation (no history), questions answered from the manual.
    def body(i: int, question: str | None = None) -> dict[str, Any]:
        return {"message": question or QUESTIONS[i % len(QUESTIONS)], "collection_ids": [collection_id]}

    stream_chat(client, body(0))  # warm-up: connections, caches, first-use imports
    streamed = [stream_chat(client, body(i)) for i in range(n_stream)]
    good = [timing for timing in streamed if timing.ok]
    failed = len(streamed) - len(good)
    chat = Table("end_to_end — chat turns through the gateway (each in a new conversation)", _columns())
    if good:
        _row(chat, "streamed: response headers", [t.headers for t in good], failed)
        _row(chat, "streamed: first `delta` event", [t.first_delta for t in good], failed)
        _row(chat, "streamed: `end` event", [t.end for t in good], failed)
    whole = [chat_whole(client, body(i)) for i in range(n_whole)]
    _row(
        chat,
        "non-streamed: whole answer",
        [s for s, r in whole if "message" in r],
        sum("message" not in r for _, r in whole),
    )
    keyword_stream = [stream_chat(client, body(0, KEYWORD_QUESTION)) for _ in range(n_whole)]
    _row(chat, f"keyword question {KEYWORD_QUESTION!r}: first `delta`", [t.first_delta for t in keyword_stream if t.ok])
    keyword_whole = [chat_whole(client, body(0, KEYWORD_QUESTION)) for _ in range(n_whole)]
    _row(chat, f"keyword question {KEYWORD_QUESTION!r}: whole answer", [s for s, r in keyword_whole if "message" in r])
    sample = keyword_whole[-1][1].get("message", {}).get("content", "")
    found = "blocked" in sample
    chat.notes.append(f"answer to {KEYWORD_QUESTION!r} quotes the fault-code passage: {found} ({sample[:90]!r}…)")
    chat.notes.append(f"collection: {1 + n_docs + n_large} documents; one warm-up turn before timing")

    search = _search_table(platform, collection_id, n_search)
    concurrency = _concurrency_table(platform, client, body, per_client)
    return [ingest, chat, search, concurrency]


def _search_table(platform: Platform, collection_id: str, times: int) -> Table:
    """retrieval-svc's Search alone, over gRPC from this process, with the tenant the gateway would send."""
    with psycopg.connect(platform.database_url) as conn:
        row = conn.execute("SELECT tenant_id FROM ingestion.collections WHERE id = %s", (collection_id,)).fetchone()
    assert row is not None
    metadata = (("x-tenant-id", str(row[0])), ("x-request-id", "bench"))
    table = Table("end_to_end — retrieval Search over gRPC (k=8, this collection)", _columns())
    target = f"127.0.0.1:{platform.ports.grpc['retrieval']}"
    modes = {
        "keyword": retrieval_pb2.SEARCH_MODE_KEYWORD,
        "vector": retrieval_pb2.SEARCH_MODE_VECTOR,
        "hybrid (what chat-svc asks for)": retrieval_pb2.SEARCH_MODE_HYBRID,
    }
    with grpc.insecure_channel(target) as channel:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        for question in (KEYWORD_QUESTION, QUESTIONS[0]):
            for name, mode in modes.items():
                request = retrieval_pb2.SearchRequest(query=question, collection_ids=[collection_id], k=8, mode=mode)
                stub.Search(request, metadata=metadata, timeout=30)  # warm-up
                samples, errors, top = [], 0, ""
                for _ in range(times):
                    started = time.perf_counter()
                    try:
                        response = stub.Search(request, metadata=metadata, timeout=30)
                    except grpc.RpcError:
                        errors += 1
                        continue
                    samples.append(time.perf_counter() - started)
                    top = response.hits[0].text[:40] if response.hits else "(no hits)"
                _row(table, f"{question[:24]!r} {name}", samples, errors)
                table.notes.append(f"{question[:24]!r} {name}: top hit {top!r}")
    return table


def _concurrency_table(
    platform: Platform, client: httpx.Client, body: Callable[[int], dict[str, Any]], per_client: int
) -> Table:
    """1, then 4 clients, each its own connection, asking `per_client` streamed questions back to back."""
    assert platform.secrets is not None
    table = Table(
        f"end_to_end — concurrency (streamed turns, {per_client} per client, back to back)",
        ("clients", "turns", "wall s", "turns/s", "median `end` ms", "p95 `end` ms", "median first delta ms", "errors"),
    )
    headers = {"Authorization": f"Bearer {platform.secrets.admin_api_key}"}
    for clients in (1, 4):
        barrier = threading.Barrier(clients)

        def worker(index: int, barrier: threading.Barrier = barrier) -> list[StreamTiming]:
            with httpx.Client(base_url=platform.gateway_url, headers=headers, timeout=120) as own:
                own.get("/healthz")
                barrier.wait(timeout=60)
                return [stream_chat(own, body(index * per_client + i)) for i in range(per_client)]

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            results = [timing for batch in pool.map(worker, range(clients)) for timing in batch]
        wall = time.perf_counter() - started
        good = [t for t in results if t.ok]
        table.add(
            clients,
            len(results),
            f"{wall:.2f}",
            f"{len(good) / wall:.2f}",
            ms(median([t.end for t in good])) if good else "-",
            ms(p95([t.end for t in good])) if good else "-",
            ms(median([t.first_delta for t in good])) if good else "-",
            len(results) - len(good),
        )
    table.notes.append(
        "wall time includes each client's connection set-up; the clients share the machine's cores with the platform"
    )
    return table
