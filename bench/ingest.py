"""Ingestion through the public API, on a platform started as `make run` starts it
(`parley.kit.devstack.Platform`, temporary folder, free ports, always stopped at the end):
`.venv/bin/python -m bench.ingest [--quick] [--files N]` from the repository root.

Measured:
- a feature-length screenplay (built from the samples in ../shared/data/screenplays: their scenes
  repeated, each copy with its own scene numbers and its characters' names varied, until the
  script runs to 120 pages): seconds from sending the upload to searchable (`analyzing`, its
  artifacts being written, or `ready`), and to `ready` (its scene cards, outline, character sheets
  and plot threads written; offline, the `local` writer extracts them);
- 1,000 Markdown files (bench.corpus, 2-6 KB each; --files 5000 for issue 8's corpus) uploaded
  by 4 clients: documents and sections per second from the first upload until the last one is
  `ready` (the default embedder: MiniLM);
- the same screenplay with one scene's dialogue edited, sent as a new version (PUT): how many
  chunks retrieval embedded again, counted by retrieval itself (the `model` source of its
  `parley_retrieval_embeddings_total` counter on its /metrics endpoint, before and after), next
  to the chunk ids that changed between the versions and that one scene's chunk count.

Skipped, with a message, when ../shared/data is not there.
"""

import argparse
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

from bench._common import Table
from bench.corpus import markdown_document
from bench.end_to_end import running_platform
from parley.ingestion.formats import parse_document
from parley.kit.devstack import Platform

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SAMPLES = ("The-Last-Birthday-Card.fountain", "Brick-and-Steel.fountain")
TARGET_PAGES = 120
READY_WITHIN = 600.0
POLL_SECONDS = 0.05
HEADING = re.compile(r"^(INT|EXT|INT\./EXT|I/E)[. ]", re.MULTILINE)
CUE = re.compile(r"^([A-Z][A-Z .'-]{1,30})(\s*\(.*\))?$")
EDITED_SCENE = 40  # the scene (as numbered here) the second version adds a line of action to
EDITED_LINE = "The card on the table is older than anyone in the room."


def _scenes(fountain: str) -> list[str]:
    """A sample's scenes, each from its heading to the next; the title page and acts left out."""
    starts = [match.start() for match in HEADING.finditer(fountain)]
    return [fountain[start:end].strip() for start, end in zip(starts, [*starts[1:], len(fountain)], strict=True)]


def _vary(scene: str, *, copy: int, number: int) -> str:
    """One copy of a scene: its heading numbered (#n#), every speaking character renamed for the copy."""
    heading, _, body = scene.partition("\n")
    lines = []
    for line in body.split("\n"):
        cue = CUE.match(line.strip())
        # A cue stands alone above its speech; renaming only cues keeps the text otherwise the same.
        lines.append(f"{cue.group(1).strip()} {copy}{cue.group(2) or ''}" if cue and line.strip() == line else line)
    return f"{heading.strip()} #{number}#\n" + "\n".join(lines)


def feature_screenplay() -> tuple[str, int]:
    """A Fountain script of at least TARGET_PAGES pages, and its page count (as ingestion counts)."""
    samples = [(DATA / "screenplays" / name).read_text() for name in SAMPLES]
    scenes = [scene for sample in samples for scene in _scenes(sample)]
    title = "Title: The Long Birthday\nAuthor: Parley bench\n\n"
    body: list[str] = []
    copy = 0
    while True:
        copy += 1
        body += [_vary(scene, copy=copy, number=len(body) + 1 + i) for i, scene in enumerate(scenes)]
        script = title + "\n\n".join(body) + "\n"
        parsed = parse_document(script.encode(), filename="feature.fountain", declared="")
        last = [section.scene for section in parsed.sections if section.scene is not None][-1]
        pages = last.start_page if last is not None else 0
        if pages >= TARGET_PAGES:
            return script, pages


def _edit_one_scene(script: str) -> str:
    """The same script with a line of action added at the top of one scene (nothing else moves)."""
    marker = f"#{EDITED_SCENE}#\n"
    at = script.index(marker) + len(marker)
    return script[:at] + f"\n{EDITED_LINE}\n" + script[at:]


SEARCHABLE = ("analyzing", "ready")


def _wait_ready(
    client: httpx.Client, document_id: str, *, version: int = 1, statuses: tuple[str, ...] = ("ready",)
) -> dict[str, object]:
    deadline = time.perf_counter() + READY_WITHIN
    while time.perf_counter() < deadline:
        document: dict[str, object] = client.get(f"/v1/documents/{document_id}").json()
        if document["status"] in statuses and document["version"] == version:
            return document
        if document["status"] == "failed":
            raise RuntimeError(f"ingestion failed: {document}")
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"document {document_id} not ready after {READY_WITHIN:.0f}s")


def _embedded_by_model(platform: Platform) -> float:
    """Retrieval's own count of chunk embeddings it asked the model for (cache misses)."""
    url = next(metrics for name, _, metrics, _ in platform.endpoints() if name == "retrieval")
    text = httpx.get(url, timeout=10).text
    found = re.search(r'^parley_retrieval_embeddings_total\{source="model"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _chunk_ids(platform: Platform, document_id: str) -> set[str]:
    with psycopg.connect(platform.database_url) as conn:
        rows = conn.execute("SELECT chunk_id FROM retrieval.chunks WHERE document_id = %s", (document_id,)).fetchall()
    return {row[0] for row in rows}


def _collection(client: httpx.Client, name: str) -> str:
    created = client.post("/v1/collections", json={"name": f"{name}-{uuid.uuid4().hex[:6]}"})
    created.raise_for_status()
    collection_id: str = created.json()["id"]
    return collection_id


def run(*, quick: bool = False, files: int = 1000) -> list[Table]:
    if not (DATA / "screenplays").is_dir():
        print(f"(ingest: skipped, {DATA / 'screenplays'} is not there)", flush=True)
        return []
    files = 100 if quick else files
    script, pages = feature_screenplay()
    with running_platform() as (platform, _):
        assert platform.secrets is not None
        headers = {"Authorization": f"Bearer {platform.secrets.admin_api_key}"}
        with httpx.Client(base_url=platform.gateway_url, headers=headers, timeout=120) as client:
            return [_screenplay(platform, client, script, pages), _corpus(platform, client, files)]


def _screenplay(platform: Platform, client: httpx.Client, script: str, pages: int) -> Table:
    table = Table("ingest — a feature-length screenplay through the API", ("measure", "value"))
    collection_id = _collection(client, "feature")
    started = time.perf_counter()
    uploaded = client.post(
        f"/v1/collections/{collection_id}/documents",
        files={"file": ("feature.fountain", script.encode(), "text/x-fountain")},
    )
    uploaded.raise_for_status()
    document_id = uploaded.json()["id"]
    first = _wait_ready(client, document_id, statuses=SEARCHABLE)
    seconds = time.perf_counter() - started
    _wait_ready(client, document_id)
    analysed = time.perf_counter() - started
    scenes = sum(
        1 for section in parse_document(script.encode(), filename="f.fountain", declared="").sections if section.scene
    )
    table.add("script", f"{pages} pages, {scenes} scenes, {len(script) / 1024:.0f} KiB")
    table.add("upload → searchable", f"{seconds:.2f} s")
    table.add("upload → ready (artifacts written, `local` writer)", f"{analysed:.2f} s")
    table.add("chunks", first["chunk_count"])

    before_ids = _chunk_ids(platform, document_id)
    before_embedded = _embedded_by_model(platform)
    edited = _edit_one_scene(script)
    started = time.perf_counter()
    put = client.put(
        f"/v1/documents/{document_id}", files={"file": ("feature.fountain", edited.encode(), "text/x-fountain")}
    )
    put.raise_for_status()
    _wait_ready(client, document_id, version=2, statuses=SEARCHABLE)
    new_version_seconds = time.perf_counter() - started
    re_embedded = _embedded_by_model(platform) - before_embedded
    changed_ids = _chunk_ids(platform, document_id) - before_ids
    edited_scene = next(
        section
        for section in parse_document(edited.encode(), filename="f.fountain", declared="").sections
        if EDITED_LINE in section.text
    )
    table.add(f"new version, scene {EDITED_SCENE} edited: PUT → searchable", f"{new_version_seconds:.2f} s")
    table.add("sections changed (PUT's answer)", put.json()["sections"])
    table.add("chunks re-embedded (retrieval's model-embedding counter)", int(re_embedded))
    table.add("chunk ids new in version 2", len(changed_ids))
    table.add(
        f"chunks of the edited scene ({edited_scene.tokens} tokens)",
        _scene_chunks(platform, document_id, edited_scene.ordinal),
    )
    return table


def _scene_chunks(platform: Platform, document_id: str, ordinal: int) -> int:
    """The chunks of one section of the current version."""
    with psycopg.connect(platform.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM ingestion.chunks c JOIN ingestion.documents d "
            "ON d.id = c.document_id AND d.version = c.version WHERE c.document_id = %s AND c.section_ordinal = %s",
            (document_id, ordinal),
        ).fetchone()
    return int(row[0]) if row else 0


def _corpus(platform: Platform, client: httpx.Client, files: int) -> Table:
    table = Table(f"ingest — {files:,} Markdown files through the API (4 uploading clients)", ("measure", "value"))
    collection_id = _collection(client, "corpus")
    documents = [markdown_document(2000 + (i * 37) % 4000, seed=i, title=f"Manual {i}") for i in range(files)]

    def upload(i: int) -> str:
        response = client.post(
            f"/v1/collections/{collection_id}/documents",
            files={"file": (f"manual-{i}.md", documents[i].encode(), "text/markdown")},
        )
        response.raise_for_status()
        document_id: str = response.json()["id"]
        return document_id

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(upload, range(files)))
    uploaded = time.perf_counter() - started
    query = (
        "SELECT count(*) FILTER (WHERE status = 'READY'), count(*) FILTER (WHERE status = 'FAILED') "
        "FROM ingestion.documents WHERE collection_id = %s"
    )
    # READY_WITHIN per 1,000 files: a larger corpus may take proportionally longer.
    deadline = time.perf_counter() + READY_WITHIN * max(1.0, files / 1000)
    with psycopg.connect(platform.database_url, autocommit=True) as conn:
        while True:
            row = conn.execute(query, (collection_id,)).fetchone()
            ready, failed = row if row else (0, 0)
            if ready + failed >= len(ids) or time.perf_counter() > deadline:
                break
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
        sections_row = conn.execute(
            "SELECT count(*) FROM ingestion.sections s JOIN ingestion.documents d "
            "ON d.id = s.document_id AND d.version = s.version WHERE d.collection_id = %s",
            (collection_id,),
        ).fetchone()
    sections = int(sections_row[0]) if sections_row else 0
    table.add("files", f"{files:,} ({sum(len(d) for d in documents) / 1024 / 1024:.1f} MiB)")
    table.add("ready / failed", f"{ready} / {failed}")
    table.add("sections", f"{sections:,}")
    table.add("all uploads accepted after", f"{uploaded:.1f} s")
    table.add("first upload → last ready", f"{seconds:.1f} s")
    table.add("sections per second", f"{sections / seconds:.0f}")
    table.add("documents per second", f"{files / seconds:.1f}")
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100 files")
    parser.add_argument("--files", type=int, default=1000, help="Markdown files in the corpus run")
    arguments = parser.parse_args()
    for result in run(quick=arguments.quick, files=arguments.files):
        print(result.render())
        print()
