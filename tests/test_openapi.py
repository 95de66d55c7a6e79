"""The OpenAPI document is the truth: schemathesis generates requests for every operation from
the gateway's own `/openapi.json` and sends them to the whole platform (real backends). Every
answer must be a status the document lists for that operation, with the documented content type
and schema, and never a 5xx the platform did not mean (a 503/504 from a backend is documented).

Seeded (`derandomize`) and bounded (20 examples per operation), so a run is repeatable and takes
about a minute (plus the platform's start when run alone). It runs as a tenant of its own, whose
owner is not the installation's owner, so what it changes (limits, users, keys, budget) touches no
other test.
"""

import uuid
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from parley.kit.devstack import Platform

EXAMPLES_PER_OPERATION = 20
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# 503/504 are documented answers (a backend down or slow): not what this checks for.
MEANT = {503, 504}


@pytest.fixture(scope="module")
def tenant_owner(platform: Platform, api: httpx.Client) -> dict[str, str]:
    made = api.post("/v1/tenants", json={"name": f"openapi-{uuid.uuid4().hex[:6]}", "owner_name": "Schema"})
    assert made.status_code == 201, made.text
    owner = {"Authorization": f"Bearer {made.json()['api_key']['key']}"}
    _no_limits(platform, owner)
    return owner


def _no_limits(platform: Platform, owner: dict[str, str]) -> None:
    """The run's tenant unthrottled: generated requests would otherwise spend the minute's
    allowance (or set a limit of 1) and leave the rest of the run a wall of 429s."""
    reset = httpx.put(
        f"{platform.gateway_url}/v1/tenant/limits",
        json={"requests_per_minute": 0, "chat_requests_per_minute": 0, "llm_tokens_per_minute": 0},
        headers=owner,
    )
    assert reset.status_code == 200, reset.text


def test_every_answer_is_one_the_document_lists(platform: Platform, tenant_owner: dict[str, str]) -> None:
    """Each operation's failures are kept (hypothesis shrinks each to its simplest case) and all
    are reported together, so one run shows every disagreement between document and gateway."""
    loaded = schemathesis.openapi.from_url(f"{platform.gateway_url}/openapi.json")
    failures: list[str] = []
    statuses: dict[int, int] = {}
    operations = 0
    for result in loaded.get_all_operations():
        operation = result.ok()
        # The stream routes answer for as long as a document or turn goes on: not for a fuzzer.
        if operation.path.endswith("/events"):
            continue
        operations += 1

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy())
        def exercise(case: Any) -> None:
            response = case.call(base_url=platform.gateway_url, headers=tenant_owner, timeout=60)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if case.operation.path == "/v1/tenant/limits":
                _no_limits(platform, tenant_owner)
            if response.status_code not in MEANT:
                case.validate_response(response, checks=CHECKS)

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as failure:  # noqa: BLE001 - recorded; go on with the next
            failures.append(f"{operation.method.upper()} {operation.path}: {str(failure)[:800]}")
    assert operations > 25
    print("statuses seen:", dict(sorted(statuses.items())))
    # Most generated requests are refused (422); some must be served, or nothing was tried.
    assert sum(count for status, count in statuses.items() if status < 300) > operations
    assert failures == [], "\n\n".join(failures)
