"""The OpenAPI document is the truth: schemathesis generates requests for every operation from
the gateway's own `/openapi.json` and sends them to the whole platform (real backends). Every
answer must be a status the document lists for that operation, with the documented content type
and schema, and never a 5xx the platform did not mean (a 503/504 from a backend is documented); and
a request the document calls valid is not refused with a 400 or 422 (`positive_data_acceptance`).

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
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from parley.kit.devstack import Platform

EXAMPLES_PER_OPERATION = 20
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CHECKS = [*CONFORMANCE, positive_data_acceptance]
# What a request the document calls valid may still be answered (`positive_data_acceptance`):
# served, a 401/403 for a credential or role (the run's owner is not the installation's owner),
# a 404 for an id drawn at random (no such thing in this tenant), a 409 for a name already taken,
# a 402/429 once a generated budget or limit is spent, and the documented 503/504. Anything else
# in 4xx (a 400 or 422 for a request the document allows) is a disagreement to fix.
ACCEPTED = ["2xx", "3xx", "401", "402", "403", "404", "409", "429", "503", "504"]
# Refusals the document states in words but JSON Schema cannot express: a field against the clock,
# against another field, or against what this deployment serves. Only these exact answers (status
# and the refusal's words) are not counted as valid requests refused.
NOT_EXPRESSIBLE: dict[tuple[str, str], list[tuple[int, str]]] = {
    ("POST", "/v1/api-keys"): [(422, "expires_at must be in the future")],
    ("GET", "/v1/usage"): [(400, "since must be before until")],
    ("POST", "/v1/search"): [(422, "page_from must not be after page_to")],
    ("POST", "/v1/chat"): [(400, "unknown provider"), (400, "unknown model")],
    # JSON Schema cannot single out an array's last item: the question is the last message.
    ("POST", "/v1/chat/completions"): [
        (400, "the last message must be the user's question"),
        (400, "the question is empty"),
        (400, "the question is over"),
        (400, "unknown provider"),
        (400, "unknown model"),
    ],
    # The embedder's size is the deployment's.
    ("POST", "/v1/embeddings"): [(400, "dimensions: this model makes")],
}
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


def _not_throttling(case: Any) -> bool:
    """A limit the run sets on its own tenant (`PUT /v1/tenant/limits`) is reset after each case,
    but the reset is itself a request: a generated limit below what the run sends in a minute
    would refuse it (429) and throttle the rest of the run. Such a body is not sent; 0 (none),
    null (the default) and generous limits are."""
    if case.operation.path != "/v1/tenant/limits" or not isinstance(case.body, dict):
        return True
    return all(not _throttles(limit) for limit in case.body.values())


def _throttles(limit: Any) -> bool:
    """Whether the gateway would read `limit` as a small limit: it reads 5.0 and "5" as 5 too (a
    boolean it refuses)."""
    if isinstance(limit, bool):
        return False
    try:
        number = float(limit)
    except (TypeError, ValueError):
        return False
    return 0 < number < 10_000


def _checks_for(case: Any, response: httpx.Response) -> list[Any]:
    """Every check, but the acceptance one for the refusals the document cannot express."""
    for status, words in NOT_EXPRESSIBLE.get((case.method.upper(), case.operation.path), []):
        if response.status_code == status and words in response.text:
            return CONFORMANCE
    return CHECKS


def test_every_answer_is_one_the_document_lists(platform: Platform, tenant_owner: dict[str, str]) -> None:
    """Each operation's failures are kept (hypothesis shrinks each to its simplest case) and all
    are reported together, so one run shows every disagreement between document and gateway."""
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}}}
    )
    loaded = schemathesis.openapi.from_url(f"{platform.gateway_url}/openapi.json", config=config)
    failures: list[str] = []
    statuses: dict[int, int] = {}
    operations = 0
    for result in loaded.get_all_operations():
        operation = result.ok()
        # The stream routes answer for as long as a document or turn goes on: not for a fuzzer.
        if operation.path.endswith("/events"):
            continue
        operations += 1
        # A page token is one the gateway issued, as an id is one it made: the fuzzer cannot invent
        # one (a made-up token is a 400, as documented), so lists are read from their first page.
        first_page = {"page_token": ""} if operation.get_parameter("page_token", "query") else None

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy(query=first_page).filter(_not_throttling))
        def exercise(case: Any) -> None:
            response = case.call(base_url=platform.gateway_url, headers=tenant_owner, timeout=60)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if case.operation.path == "/v1/tenant/limits":
                _no_limits(platform, tenant_owner)
            if response.status_code not in MEANT:
                case.validate_response(response, checks=_checks_for(case, response))

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as failure:  # noqa: BLE001 - recorded; go on with the next
            failures.append(f"{operation.method.upper()} {operation.path}: {str(failure)[:800]}")
    assert operations > 25
    print("statuses seen:", dict(sorted(statuses.items())))
    # Most generated requests are refused (422); some must be served, or nothing was tried.
    assert sum(count for status, count in statuses.items() if status < 300) > operations
    assert failures == [], "\n\n".join(failures)
