"""The `parley` command: its global options, one-line errors, and the commands."""

import functools
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from parley.cli import chat as chat_command
from parley.cli import ingest as ingest_command
from parley.cli import reports
from parley.cli.client import Api, CliError, Settings

app = typer.Typer(
    name="parley",
    help="Parley from a terminal: ingest documents, chat with them, see scenes, characters and usage, manage keys.",
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


keys_app = typer.Typer(help="API keys: yours (an admin: the tenant's). The secret is shown once, when made.")
users_app = typer.Typer(help="The tenant's people and their roles (admins).")
app.add_typer(keys_app, name="keys", no_args_is_help=True)
app.add_typer(users_app, name="users", no_args_is_help=True)


class Scope(StrEnum):
    read = "read"
    write = "write"
    chat = "chat"
    admin = "admin"


RoleName = Literal["owner", "admin", "member", "viewer"]
DURATION = re.compile(r"^(\d+)([hdw])$")


def expiry(text: str) -> datetime:
    """`30d`, `12h`, `2w` from now, or a date or time (ISO 8601; without a zone, UTC)."""
    matched = DURATION.match(text.strip())
    if matched:
        hours = {"h": 1, "d": 24, "w": 24 * 7}[matched[2]] * int(matched[1])
        return datetime.now(UTC) + timedelta(hours=hours)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"--expires {text!r}: give 30d, 12h, 2w, or a date such as 2027-01-31") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def user_id(api: Api, name_or_id: str) -> str:
    """A user of the tenant by id, or by name or email (admins)."""
    if UUID.match(name_or_id):
        return name_or_id
    found = [u for u in api.pages("/v1/users") if name_or_id in (u["name"], u.get("email"))]
    if len(found) != 1:
        raise CliError(f"{'no' if not found else 'more than one'} user named {name_or_id!r} (parley users list)")
    return str(found[0]["id"])


def _key_state(key: dict[str, Any]) -> str:
    if key.get("revoked_at"):
        return "[red]revoked[/]"
    if key.get("expires_at") and datetime.fromisoformat(key["expires_at"]) <= datetime.now(UTC):
        return "[yellow]expired[/]"
    return "[green]active[/]"


def _day(stamp: str | None, never: str = "never") -> str:
    return stamp[:16].replace("T", " ") if stamp else never


@keys_app.command("list")
@one_line_errors
def keys_list(ctx: typer.Context) -> None:
    """Your keys (an admin: every key of the tenant), revoked ones too; never their secrets."""
    api = connect(ctx)
    me = api.get("/v1/me")
    admin = "admin" in me["scopes"] and me["user"]["role"] in ("owner", "admin")
    names = {u["id"]: u["name"] for u in api.pages("/v1/users")} if admin else {}
    table = Table("id", "name", "prefix", "holder", "scopes", "expires", "last used", "state")
    for key in api.pages("/v1/api-keys"):
        current = " (this key)" if key["id"] == me.get("api_key_id") else ""
        table.add_row(
            key["id"],
            escape(key["name"]) + current,
            f"{key['prefix']}…",
            escape(names.get(key["user_id"], me["user"]["name"] if key["user_id"] == me["user"]["id"] else "")),
            ", ".join(key["scopes"]),
            _day(key.get("expires_at")),
            _day(key.get("last_used_at")),
            _key_state(key),
        )
    console.print(table)


@keys_app.command("create")
@one_line_errors
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="what it is for: laptop, CI, …")],
    scope: Annotated[
        list[Scope] | None, typer.Option("--scope", "-s", help="repeatable; default: all your role allows")
    ] = None,
    expires: Annotated[str | None, typer.Option(help="30d, 12h, 2w, or a date; default: never")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="make it for this user (admins): name or id")] = None,
) -> None:
    """Make a key. The secret alone goes to stdout, this once: Parley keeps only its hash."""
    api = connect(ctx)
    body: dict[str, Any] = {"name": name}
    if scope:
        body["scopes"] = list(dict.fromkeys(s.value for s in scope))
    if expires:
        body["expires_at"] = expiry(expires).isoformat()
    if user:
        body["user_id"] = user_id(api, user)
    made = api.post("/v1/api-keys", body)
    until = f"until {_day(made['expires_at'])}" if made.get("expires_at") else "with no expiry"
    errors.print(
        f"key {made['name']!r} ({made['prefix']}…, id {made['id']}), scopes {', '.join(made['scopes'])}, {until}.\n"
        "[bold]Store it now: you will not see it again.[/]"
    )
    sys.stdout.write(made["key"] + "\n")


@keys_app.command("revoke")
@one_line_errors
def keys_revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="the key's id (keys list)")]) -> None:
    """Revoke a key (yours; an admin: any of the tenant's). Whatever uses it is refused from now on."""
    connect(ctx).request("DELETE", f"/v1/api-keys/{key_id}")
    console.print(f"revoked {key_id}")


@users_app.command("list")
@one_line_errors
def users_list(ctx: typer.Context) -> None:
    """The tenant's people and their roles."""
    table = Table("id", "name", "email", "role", "added")
    for u in connect(ctx).pages("/v1/users"):
        table.add_row(u["id"], escape(u["name"]), escape(u.get("email") or ""), u["role"], _day(u["created_at"]))
    console.print(table)


@users_app.command("add")
@one_line_errors
def users_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the person's name")],
    role: Annotated[RoleName, typer.Option(help="what they may do (docs/api.md)")] = "member",
    email: Annotated[str | None, typer.Option(help="unique within the tenant")] = None,
) -> None:
    """Add a person; then make them a key: parley keys create NAME --user ID."""
    body: dict[str, Any] = {"name": name, "role": role} | ({"email": email} if email else {})
    added = connect(ctx).post("/v1/users", body)
    console.print(f"added {escape(added['name'])} as {added['role']}: id {added['id']}")


@users_app.command("role")
@one_line_errors
def users_role(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="name, email or id")],
    role: Annotated[RoleName, typer.Argument(help="the new role")],
) -> None:
    """Change a person's role; it applies to their keys at once."""
    api = connect(ctx)
    changed = api.request("PATCH", f"/v1/users/{user_id(api, user)}", json={"role": role}).json()
    console.print(f"{escape(changed['name'])} is now {changed['role']}")


@users_app.command("remove")
@one_line_errors
def users_remove(ctx: typer.Context, user: Annotated[str, typer.Argument(help="name, email or id")]) -> None:
    """Remove a person and every key they hold."""
    api = connect(ctx)
    api.request("DELETE", f"/v1/users/{user_id(api, user)}")
    console.print(f"removed {escape(user)}")
