"""Retrieval quality through the public API, on a BEIR-layout data set, as a client would measure it.

    .venv/bin/python bench/retrieval_quality.py [FOLDER] [--modes hybrid,vector,keyword]

FOLDER holds corpus.jsonl, queries.jsonl and qrels/test.tsv (default: ../shared/data/cranfield).
The whole platform is started as `make run` starts it (bench.end_to_end.running_platform: embedded
PostgreSQL + NATS, every service a process, retrieval with its default embedder), every document
is uploaded as one plain-text file through `POST /v1/collections/{id}/documents`, and the run waits
until all are `ready` (ingest throughput: documents per second from the first upload to the last
`ready`). Then every judged query goes through `POST /v1/search` in each mode with k 50 (the API's
maximum), hits folded to documents (a long abstract may be two chunks; a document ranks where its
best chunk does). Printed: nDCG@10 graded and binary, recall@10 and @50 (not @100: k stops at 50),
MRR@10 per mode, and each mode's HTTP latency.
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package, from any folder

from bench._common import Table, machine, median, ms, p95
from bench.end_to_end import running_platform
from bench.retrieval_lab import DEFAULT_FOLDER, Dataset, Ranking, load, mrr_at_10, ndcg_at_10, recall_at

MODES = ("hybrid", "vector", "keyword")
K = 50
UPLOAD_CLIENTS = 4
READY_WITHIN_SECONDS = 3_600.0


def upload_all(client: httpx.Client, dataset: Dataset) -> tuple[dict[str, str], float, str]:
    """Upload every document into a new collection and wait until all are ready. Returns the
    document id → corpus id map, the seconds taken and the collection id."""
    created = client.post("/v1/collections", json={"name": f"bench-{int(time.time())}"})
    created.raise_for_status()
    collection_id: str = created.json()["id"]

    def upload(item: tuple[str, str]) -> tuple[str, str]:
        corpus_id, body = item
        response = client.post(
            f"/v1/collections/{collection_id}/documents",
            files={"file": (f"{corpus_id}.txt", body.encode(), "text/plain")},
            data={"title": corpus_id},
        )
        if response.status_code != 202:
            raise RuntimeError(f"upload of {corpus_id}: {response.status_code} {response.text[:300]}")
        return response.json()["id"], corpus_id

    # An empty file is refused (400): such a document can never be found, as in any index.
    uploadable = [(corpus_id, body) for corpus_id, body in dataset.corpus.items() if body.strip()]
    started = time.perf_counter()
    with ThreadPoolExecutor(UPLOAD_CLIENTS) as pool:
        documents = dict(pool.map(upload, uploadable))
    print(f"(uploaded {len(documents)} documents in {time.perf_counter() - started:.0f} s)", flush=True)
    while time.perf_counter() - started < READY_WITHIN_SECONDS:
        statuses = statuses_of(client, collection_id)
        if "failed" in statuses:
            raise RuntimeError(f"{statuses['failed']} documents failed")
        if statuses.get("ready", 0) == len(documents):
            return documents, time.perf_counter() - started, collection_id
        time.sleep(2.0)
    raise RuntimeError(f"not all ready after {READY_WITHIN_SECONDS:.0f} s: {statuses}")


def statuses_of(client: httpx.Client, collection_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    token = ""
    while True:
        page = client.get(
            f"/v1/collections/{collection_id}/documents", params={"page_size": 100, "page_token": token}
        ).json()
        for document in page["data"]:
            counts[document["status"]] = counts.get(document["status"], 0) + 1
        token = page["next_page_token"] or ""
        if not token:
            return counts


def search_all(
    client: httpx.Client, dataset: Dataset, collection_id: str, documents: dict[str, str], mode: str
) -> tuple[dict[str, Ranking], list[float]]:
    rankings: dict[str, Ranking] = {}
    seconds: list[float] = []
    for query_id, query in dataset.queries.items():
        started = time.perf_counter()
        response = client.post(
            "/v1/search", json={"query": query, "collection_ids": [collection_id], "mode": mode, "k": K}
        )
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
        ranking = [documents[hit["document_id"]] for hit in response.json()["data"]]
        rankings[query_id] = list(dict.fromkeys(ranking))
    return rankings, seconds


def quality_row(mode: str, rankings: dict[str, Ranking], qrels: dict[str, dict[str, int]]) -> list[str]:
    def mean(metric: Callable[[Ranking, dict[str, int]], float]) -> str:
        return f"{statistics.fmean(metric(rankings[q], qrels[q]) for q in rankings):.3f}"

    return [
        mode,
        mean(lambda r, rel: ndcg_at_10(r, rel, binary=False)),
        mean(lambda r, rel: ndcg_at_10(r, rel, binary=True)),
        mean(lambda r, rel: recall_at(r, rel, 10)),
        mean(lambda r, rel: recall_at(r, rel, 50)),
        mean(mrr_at_10),
    ]


def run(folder: Path, modes: list[str]) -> list[Table]:
    dataset = load(folder)
    with running_platform() as (platform, _):
        assert platform.secrets is not None
        headers = {"Authorization": f"Bearer {platform.secrets.admin_api_key}"}
        with httpx.Client(base_url=platform.gateway_url, headers=headers, timeout=120) as client:
            documents, ingest_seconds, collection_id = upload_all(client, dataset)
            results = {mode: search_all(client, dataset, collection_id, documents, mode) for mode in modes}
    quality = Table(
        f"retrieval_quality — {folder.name} through POST /v1/search "
        f"({len(dataset.corpus)} documents, {len(dataset.queries)} queries, k {K})",
        ("mode", "nDCG@10 graded", "nDCG@10 binary", "recall@10", "recall@50", "MRR@10", "p50 ms", "p95 ms"),
    )
    for mode, (rankings, seconds) in results.items():
        quality.add(*quality_row(mode, rankings, dataset.qrels), ms(median(seconds)), ms(p95(seconds)))
    quality.notes.append(
        f"Ingest: {len(documents)} documents uploaded ({UPLOAD_CLIENTS} clients) and ready in {ingest_seconds:.0f} s"
        f" = {len(documents) / ingest_seconds:.1f} documents/s (chunking, MiniLM embedding, BM25 postings)."
    )
    quality.notes.append(
        f"{len(dataset.corpus) - len(documents)} empty documents not uploaded (an empty file is refused)."
        " Hits folded to documents (a document ranks where its best chunk does); binary counts every judged"
        " grade as relevant; gains are linear. Latency is the HTTP round trip, one query at a time."
    )
    return [quality]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER, help="a BEIR-layout data set")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, of hybrid, vector, keyword")
    args = parser.parse_args(argv)
    if not (args.folder / "corpus.jsonl").exists():
        print(f"skipped: no BEIR data set at {args.folder} (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
        return 0
    modes = [mode for mode in args.modes.split(",") if mode]
    if not set(modes) <= set(MODES):
        parser.error(f"modes are {', '.join(MODES)}")
    tables = run(args.folder, modes)
    print("\n".join(f"- {line}" for line in machine()))
    print(f"- command: .venv/bin/python bench/retrieval_quality.py {' '.join(argv or sys.argv[1:])}".rstrip())
    for table in tables:
        print()
        print(table.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
