"""The gateway's HTTP API as the CLI uses it: where it is and which key to send, its one error
shape, and its server-sent event streams.

Settings, first found wins: flags (`--url`, `--key`), the environment (`PARLEY_URL`,
`PARLEY_API_KEY`), the config file (`PARLEY_CONFIG`, else `~/.config/parley/config.toml`:
`url = "…"`, `api_key = "…"`), then for the key the admin key `make run` leaves in
`.parley/admin-key` of the current folder."""

import json
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
DEV_KEY_FILE = Path(".parley") / "admin-key"


class CliError(Exception):
    """Something to say in one line and exit 1 on: never a traceback."""

    def line(self) -> str:
        return str(self)


class ApiError(CliError):
    """The API's error shape: `{"error": {"code", "message", "request_id"}}`."""

    def __init__(self, status: int, code: str, message: str, request_id: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id

    def line(self) -> str:
        return f"{self.args[0]} ({self.status} {self.code}, request id {self.request_id or 'none'})"


def config_path() -> Path:
    explicit = os.environ.get("PARLEY_CONFIG")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "parley" / "config.toml"


def state_path() -> Path:
    """Where `parley ingest` remembers which file became which document (beside the config)."""
    return config_path().with_name("ingested.json")


@dataclass(frozen=True, slots=True)
class Settings:
    url: str
    api_key: str

    @classmethod
    def resolve(cls, *, url: str | None, api_key: str | None) -> "Settings":
        stored: dict[str, Any] = {}
        path = config_path()
        if path.exists():
            try:
                stored = tomllib.loads(path.read_text())
            except (OSError, tomllib.TOMLDecodeError) as error:
                raise CliError(f"cannot read the config file {path}: {error}") from None
        chosen_url = url or os.environ.get("PARLEY_URL") or str(stored.get("url") or "") or DEFAULT_URL
        key = api_key or os.environ.get("PARLEY_API_KEY") or str(stored.get("api_key") or "")
        if not key and DEV_KEY_FILE.exists():
            key = DEV_KEY_FILE.read_text().strip()
        if not key:
            raise CliError(f"no API key: pass --key, set PARLEY_API_KEY, or put api_key in {path}")
        return cls(url=chosen_url.rstrip("/"), api_key=key)


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    id: str
    data: Any


class Api:
    """A thin client: JSON in and out, errors raised as `ApiError`, streams as `Event`s."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.http = httpx.Client(
            base_url=settings.url,
            headers={"Authorization": f"Bearer {settings.api_key}", "User-Agent": "parley-cli"},
            timeout=httpx.Timeout(60.0, connect=10.0),
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise CliError(f"cannot reach Parley at {self.settings.url}: {error}") from None
        check(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body).json()

    def pages(self, path: str, *, limit: int = 10_000) -> list[dict[str, Any]]:
        """Every item of a list route, page after page."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            page = self.get(path, page_size=100, **({"page_token": token} if token else {}))
            items.extend(page["data"])
            token = page.get("next_page_token") or ""
            if not token or len(items) >= limit:
                return items

    def stream(self, method: str, path: str, **kwargs: Any) -> "EventStream":
        return EventStream(self, method, path, kwargs)


class EventStream:
    """`with api.stream(...) as stream:` the response's headers, then `for event in stream`."""

    def __init__(self, api: Api, method: str, path: str, kwargs: dict[str, Any]) -> None:
        self._context = api.http.stream(method, path, timeout=httpx.Timeout(60.0, read=None), **kwargs)
        self._url = api.settings.url
        self.response: httpx.Response | None = None

    def __enter__(self) -> "EventStream":
        try:
            self.response = self._context.__enter__()
        except httpx.TransportError as error:
            raise CliError(f"cannot reach Parley at {self._url}: {error}") from None
        if self.response.is_error:
            self.response.read()
            self._context.__exit__(None, None, None)
            check(self.response)
        return self

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(None, None, None)

    def __iter__(self) -> Iterator[Event]:
        assert self.response is not None
        fields: dict[str, str] = {}
        try:
            for line in self.response.iter_lines():
                if not line:
                    if "data" in fields:
                        yield Event(fields.get("event", "message"), fields.get("id", ""), json.loads(fields["data"]))
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value
        except httpx.TransportError as error:
            raise CliError(f"the stream from {self._url} broke off: {error}") from None


def check(response: httpx.Response) -> None:
    if not response.is_error:
        return
    request_id = response.headers.get("X-Request-ID", "")
    try:
        error = response.json()["error"]
        raise ApiError(response.status_code, error["code"], error["message"], error.get("request_id") or request_id)
    except (ValueError, KeyError, TypeError):
        raise ApiError(
            response.status_code, f"http_{response.status_code}", response.reason_phrase, request_id
        ) from None
