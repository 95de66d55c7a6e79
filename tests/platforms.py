"""What the end-to-end tests share: a whole platform started as `make run` starts it (with the
settings a test names), a client with its admin key, waiting for something to become true, and a
look into its database."""

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from parley.kit.devstack import Platform, Ports

# The gateway's rate limits off: a test asking dozens of questions a minute from one key is not
# testing them (their own tests set theirs per tenant).
NO_RATE_LIMITS = {
    "PARLEY_RATE_CHAT_REQUESTS_PER_MINUTE": "0",
    "PARLEY_RATE_REQUESTS_PER_MINUTE": "0",
    "PARLEY_RATE_LLM_TOKENS_PER_MINUTE": "0",
}


@contextmanager
def running_platform(folder: Path, settings: Mapping[str, str]) -> Iterator[Platform]:
    """Every service, embedded PostgreSQL and NATS, with `settings` and none of this shell's
    PARLEY_* variables; stopped on the way out."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PARLEY_")}
    started = Platform(folder, ports=Ports.free(), environ=environ | dict(settings))
    started.start()
    try:
        yield started
    finally:
        started.stop()


@contextmanager
def admin_client(platform: Platform, *, timeout: float = 30) -> Iterator[httpx.Client]:
    """A client of the gateway with the admin key `make run` prints."""
    assert platform.secrets is not None
    headers = {"Authorization": f"Bearer {platform.secrets.admin_api_key}"}
    with httpx.Client(base_url=platform.gateway_url, headers=headers, timeout=timeout) as client:
        yield client


def eventually(check: Callable[[], Any], *, within: float = 60.0, what: str = "", every: float = 0.25) -> Any:
    """The value of `check` once it is truthy; fails after `within` seconds, saying `what` (or the
    check's docstring) was not so."""
    deadline = time.monotonic() + within
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"still not so after {within:.0f}s: {what or check.__doc__ or check}")
        time.sleep(every)
    return value


def chat_usage_recorded(api: httpx.Client) -> bool:
    """Whether usage-svc has recorded a chat turn's event (from JetStream, a moment after the answer)."""
    return any(row["group"] == "chat" for row in api.get("/v1/usage", params={"group_by": "kind"}).json()["rows"])


def sql(platform: Platform, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(platform.database_url) as conn:
        return conn.execute(query, params).fetchall()
