"""The whole platform, started once for the end-to-end tests exactly as `make run` starts it."""

from collections.abc import Iterator

import httpx
import pytest

from parley.kit.devstack import Platform
from tests.platforms import admin_client, running_platform


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    # No URLs: the embedded PostgreSQL and NATS start too, as on a fresh machine.
    settings = {
        # The hashing embedder: MiniLM's ~60 ms a chunk would make the 1,200-chunk manual take minutes.
        # test_end_to_end.py starts a platform of its own with the real model for the search tests.
        "PARLEY_EMBEDDING_PROVIDER": "local",
        # The tests ask more than the default 8 chat turns a minute of one user; the limit's own
        # tests set theirs per tenant.
        "PARLEY_RATE_CHAT_REQUESTS_PER_MINUTE": "1000",
        # NATS's own default message limit (1 MiB, where our embedded server allows 16): a large
        # document's chunk set then travels in parts, as it would on such a server.
        "PARLEY_MAX_EVENT_BYTES": str(1024 * 1024 - 64 * 1024),
    }
    with running_platform(tmp_path_factory.mktemp("parley"), settings) as started:
        yield started


@pytest.fixture(scope="session")
def api(platform: Platform) -> Iterator[httpx.Client]:
    with admin_client(platform) as client:
        yield client
