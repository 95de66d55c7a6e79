"""The whole platform, started once for the end-to-end tests exactly as `make run` starts it."""

import os
from collections.abc import Iterator

import httpx
import pytest

from parley.kit.devstack import Platform, Ports


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    # No URLs: the embedded PostgreSQL and NATS start too, as on a fresh machine.
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PARLEY_")}
    # The hashing embedder: MiniLM's ~60 ms a chunk would make the 1,200-chunk manual take minutes.
    # test_end_to_end.py starts a platform of its own with the real model for the search tests.
    environ["PARLEY_EMBEDDING_PROVIDER"] = "local"
    # The tests ask more than the default 8 chat turns a minute of one user; the limit's own
    # tests set theirs per tenant.
    environ["PARLEY_RATE_CHAT_REQUESTS_PER_MINUTE"] = "1000"
    # NATS's own default message limit (1 MiB, where our embedded server allows 16): a large
    # document's chunk set then travels in parts, as it would on such a server.
    environ["PARLEY_MAX_EVENT_BYTES"] = str(1024 * 1024 - 64 * 1024)
    started = Platform(tmp_path_factory.mktemp("parley"), ports=Ports.free(), environ=environ)
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def api(platform: Platform) -> Iterator[httpx.Client]:
    assert platform.secrets is not None
    headers = {"Authorization": f"Bearer {platform.secrets.admin_api_key}"}
    with httpx.Client(base_url=platform.gateway_url, headers=headers, timeout=30) as client:
        yield client
