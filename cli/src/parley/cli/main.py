"""The `parley` command: its global options, one-line errors, and the commands."""

import functools
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from parley.cli import chat as chat_command
from parley.cli import ingest as ingest_command
from parley.cli import reports
from parley.cli.client import Api, CliError, Settings

app = typer.Typer(
    name="parley",
    help="Parley from a terminal: ingest documents, chat with them, see scenes, characters and usage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True, slots=True)
class Options:
    """The global flags, kept on typer's context for the command that runs."""

    url: str | None
    key: str | None


def connect(ctx: typer.Context) -> Api:
    """The API client for this run (closed when the command ends)."""
    options = ctx.find_object(Options) or Options(None, None)
    api = Api(Settings.resolve(url=options.url, api_key=options.key))
    ctx.call_on_close(api.close)
    return api


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """An API error or a refusal is one line on stderr and exit status 1, never a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CliError as error:
            errors.print(f"[red]error:[/] {error.line()}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return run


@app.callback()
def options(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="the gateway, e.g. http://127.0.0.1:8080 (env PARLEY_URL)")] = None,
    key: Annotated[str | None, typer.Option(help="an API key (env PARLEY_API_KEY)")] = None,
) -> None:
    """Settings: flags, else PARLEY_URL / PARLEY_API_KEY, else ~/.config/parley/config.toml
    (url = "…", api_key = "…"), else the key make run leaves in .parley/admin-key."""
    ctx.obj = Options(url, key)


def collection_id(api: Api, name_or_id: str, *, create: bool = False) -> str:
    """A collection by id or by name (created when asked to)."""
    if UUID.match(name_or_id):
        return name_or_id
    for collection in api.pages("/v1/collections"):
        if collection["name"] == name_or_id:
            return str(collection["id"])
    if create:
        return str(api.post("/v1/collections", {"name": name_or_id})["id"])
    raise CliError(f"no collection named {name_or_id!r} (parley collections lists them)")


def document_id(api: Api, name_or_id: str) -> str:
    """A document by id, or by its title in any collection."""
    if UUID.match(name_or_id):
        return name_or_id
    for collection in api.pages("/v1/collections"):
        for document in api.pages(f"/v1/collections/{collection['id']}/documents"):
            if document["title"] == name_or_id:
                return str(document["id"])
    raise CliError(f"no document titled {name_or_id!r}")


@app.command()
@one_line_errors
def collections(ctx: typer.Context) -> None:
    """List the collections."""
    table = Table("id", "name", "documents", "description")
    for c in connect(ctx).pages("/v1/collections"):
        table.add_row(c["id"], c["name"], str(c["document_count"]), c["description"])
    console.print(table)


@app.command()
@one_line_errors
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="files and folders (folders: every readable file inside)")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="its name or id; created when new")],
    priority: Annotated[Literal["urgent", "normal", "low"], typer.Option(help="queue priority")] = "normal",
    wait: Annotated[bool, typer.Option(help="follow each document until it is ready")] = True,
) -> None:
    """Upload files and folders, a progress bar per file; ends with added / changed / unchanged / failed."""
    api = connect(ctx)
    counts = ingest_command.ingest(
        api, console, collection_id(api, collection, create=True), paths, priority=priority, wait=wait
    )
    if counts["failed"]:
        raise typer.Exit(1)


@app.command()
@one_line_errors
def chat(
    ctx: typer.Context,
    collection: Annotated[
        list[str] | None, typer.Option("--collection", "-c", help="a collection to ask (name or id); repeatable")
    ] = None,
    conversation: Annotated[str | None, typer.Option(help="resume this conversation")] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="ask this once and exit")] = None,
    tier: Annotated[Literal["quick", "standard", "deep"], typer.Option(help="how much context")] = "standard",
) -> None:
    """Ask questions; answers stream in, with their sources listed under them. Ctrl-C cancels an answer."""
    api = connect(ctx)
    if conversation is None and not collection:
        raise CliError("say which collections to ask (--collection) or which conversation to resume (--conversation)")
    chat_command.Session(
        api,
        console,
        collection_ids=[collection_id(api, c) for c in collection or []],
        conversation_id=conversation,
        tier=tier,
    ).run(message)


@app.command()
@one_line_errors
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="what to look for")],
    collection: Annotated[list[str], typer.Option("--collection", "-c", help="name or id; repeatable")],
    mode: Annotated[Literal["hybrid", "keyword", "vector"], typer.Option()] = "hybrid",
    k: Annotated[int, typer.Option("-k", min=1, max=50, help="how many passages")] = 10,
    character: Annotated[list[str] | None, typer.Option(help="only scenes where they speak; repeatable")] = None,
) -> None:
    """Find passages without asking for an answer."""
    api = connect(ctx)
    body: dict[str, Any] = {"query": query, "collection_ids": [collection_id(api, c) for c in collection]}
    body |= {"mode": mode, "k": k, "filters": {"characters": character or []}}
    reports.search(console, api.post("/v1/search", body)["data"])


@app.command()
@one_line_errors
def scenes(ctx: typer.Context, document: Annotated[str, typer.Argument(help="a screenplay's id or title")]) -> None:
    """A screenplay's scenes: number, heading, page, who speaks, length."""
    api = connect(ctx)
    doc = document_id(api, document)
    reports.scenes(console, api.pages(f"/v1/documents/{doc}/sections"), api.get(f"/v1/documents/{doc}/pacing"))


@app.command()
@one_line_errors
def characters(ctx: typer.Context, document: Annotated[str, typer.Argument(help="a screenplay's id or title")]) -> None:
    """A screenplay's speaking characters, most scenes first."""
    api = connect(ctx)
    reports.characters(console, api.get(f"/v1/documents/{document_id(api, document)}/characters")["characters"])


@app.command()
@one_line_errors
def usage(
    ctx: typer.Context,
    by: Annotated[Literal["day", "model", "kind", "user"], typer.Option(help="group rows by")] = "day",
    days: Annotated[int, typer.Option(min=1, max=366, help="how far back")] = 30,
    csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout instead of tables")] = False,
) -> None:
    """Tokens and cost by day, model, kind or user, and the month's budget."""
    api = connect(ctx)
    since = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    rows = api.get("/v1/usage", group_by=by, since=since)
    if csv:
        reports.usage_csv(sys.stdout, rows)
    else:
        reports.usage(console, rows, api.get("/v1/quota"))


@app.command()
@one_line_errors
def conversations(ctx: typer.Context) -> None:
    """List your conversations, most recent first (their ids resume them: chat --conversation)."""
    table = Table("id", "title", "updated")
    for c in connect(ctx).pages("/v1/conversations", limit=100):
        table.add_row(c["id"], c["title"], c.get("updated_at") or "")
    console.print(table)


@app.command()
@one_line_errors
def export(
    ctx: typer.Context,
    conversation: Annotated[str, typer.Argument(help="the conversation's id")],
    format: Annotated[Literal["markdown", "json"], typer.Option("--format", "-f")] = "markdown",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="a file (default: stdout)")] = None,
) -> None:
    """A conversation as Markdown or JSON."""
    response = connect(ctx).request("GET", f"/v1/conversations/{conversation}/export", params={"format": format})
    if output is None:
        sys.stdout.write(response.text)
    else:
        output.write_bytes(response.content)
        errors.print(f"saved {output}")
