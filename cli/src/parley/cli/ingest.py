"""`parley ingest`: files and folders into a collection, a progress bar per file from its
document's events, and a summary of what was added, changed, unchanged or failed.

Which file became which document is remembered in a small state file (`client.state_path()`),
keyed by the gateway's URL, the collection and the file's absolute path: a file seen before is
sent as a new version (`PUT`), and the gateway decides whether it changed."""

import json
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from parley.cli.client import Api, ApiError, CliError, state_path

# The endings ingestion reads (kit.contracts.DOCUMENT_TYPES, which the CLI does not import: it
# installs without the platform). A folder's other files are skipped; a file named outright is sent.
READABLE = {".fountain", ".spmd", ".fdx", ".pdf", ".html", ".htm", ".md", ".markdown", ".txt", ".text"}
STAGES = ["queued", "parsing", "chunking", "indexing", "analyzing", "ready"]
WATCHERS = 4


@dataclass
class Outcome:
    path: Path
    kind: str  # added | changed | unchanged | failed
    document: dict[str, Any] | None = None
    reason: str = ""


def files_of(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in READABLE))
        elif path.is_file():
            found.append(path)
        else:
            raise CliError(f"no such file or folder: {path}")
    return found


class Remembered:
    """file → document id, per gateway and collection."""

    def __init__(self, api: Api, collection_id: str) -> None:
        self.path = state_path()
        self.scope = f"{api.settings.url} {collection_id}"
        try:
            self.all: dict[str, dict[str, str]] = json.loads(self.path.read_text()) if self.path.exists() else {}
        except (OSError, ValueError):
            self.all = {}  # a damaged state file only costs re-sending files as new uploads

    def get(self, file: Path) -> str | None:
        return self.all.get(self.scope, {}).get(str(file.resolve()))

    def put(self, file: Path, document_id: str) -> None:
        self.all.setdefault(self.scope, {})[str(file.resolve())] = document_id

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.all, indent=1))


def send(api: Api, collection_id: str, file: Path, remembered: Remembered, priority: str) -> Outcome:
    content = file.read_bytes()
    known = remembered.get(file)
    try:
        if known:
            try:
                response = api.request(
                    "PUT", f"/v1/documents/{known}", params={"priority": priority}, files={"file": (file.name, content)}
                )
                update = response.json()
                kind = "unchanged" if update["outcome"] == "unchanged" else "changed"
                return Outcome(file, kind, update["document"])
            except ApiError as error:
                if error.status != 404:  # deleted meanwhile: upload it afresh
                    raise
        response = api.request(
            "POST",
            f"/v1/collections/{collection_id}/documents",
            files={"file": (file.name, content)},
            data={"priority": priority},
        )
        document = response.json()
        remembered.put(file, document["id"])
        # The same bytes under the same title answer the document that already has them.
        kind = "added" if document["status"] == "queued" and document["version"] == 1 else "unchanged"
        return Outcome(file, kind, document)
    except ApiError as error:
        return Outcome(file, "failed", reason=error.line())


def watch(api: Api, outcome: Outcome, progress: Progress, task: TaskID) -> None:
    """Follow one document to ready or failed; a failure becomes the outcome."""
    assert outcome.document is not None
    try:
        with api.stream("GET", f"/v1/documents/{outcome.document['id']}/events") as stream:
            for event in stream:
                if event.event == "error":
                    raise CliError(event.data.get("message", "the progress stream failed"))
                state = event.data
                status = state["status"]
                within = state["done"] / state["total"] if state["total"] else 0.0
                rank = STAGES.index(status) if status in STAGES else 0
                completed = 100.0 if status == "ready" else 100.0 * (rank + within) / (len(STAGES) - 1)
                progress.update(task, completed=completed, status=status)
                if status == "failed":
                    outcome.kind = "failed"
                    outcome.reason = f"failed while {state['failed_stage']}: {state['error']}"
                    return
                if status == "ready":
                    return
    except CliError as error:
        outcome.kind = "failed"
        outcome.reason = error.line()


def ingest(
    api: Api, console: Console, collection_id: str, paths: list[Path], *, priority: str, wait: bool
) -> Counter[str]:
    files = files_of(paths)
    if not files:
        raise CliError("no readable files there (.fountain, .fdx, .pdf, .html, .md, .txt)")
    remembered = Remembered(api, collection_id)
    progress = Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    )
    outcomes: list[Outcome] = []
    with progress:
        tasks: list[tuple[Outcome, TaskID]] = []
        for file in files:
            task = progress.add_task(file.name, total=100, status="sending")
            outcome = send(api, collection_id, file, remembered, priority)
            outcomes.append(outcome)
            if outcome.kind == "failed":
                progress.update(task, status=f"[red]failed[/]: {outcome.reason}")
            elif outcome.kind == "unchanged" or not wait:
                progress.update(task, completed=100 if outcome.kind == "unchanged" else 0, status=outcome.kind)
            else:
                tasks.append((outcome, task))
        remembered.save()
        with ThreadPoolExecutor(max_workers=WATCHERS) as pool:
            for _ in pool.map(lambda pair: watch(api, pair[0], progress, pair[1]), tasks):
                pass
        for outcome, task in tasks:
            if outcome.kind == "failed":
                progress.update(task, status=f"[red]failed[/]: {outcome.reason}")
    counts = Counter(outcome.kind for outcome in outcomes)
    for outcome in outcomes:
        if outcome.kind == "failed":
            console.print(f"[red]failed[/] {outcome.path}: {outcome.reason}", highlight=False)
    summary = ", ".join(f"{counts[kind]} {kind}" for kind in ("added", "changed", "unchanged", "failed"))
    console.print(f"{len(outcomes)} files: {summary}", highlight=False)
    return counts
