"""The coverage report written by a model, through the whole platform: ingestion's model writer
asks chat-svc's `Complete`, which asks (fake) Claude over Anthropic's SDK and bills usage-svc.

A screenplay grown to `analyzed` gets a coverage report the model wrote from the script's other
artifacts — logline, synopsis, characters, and a score on each named criterion citing scenes the
script has — billed as `summary` like every model artifact. When the model's answers cannot be
used, the report is extracted instead and says so, and both attempts are billed all the same.
"""

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from parley.kit.devstack import Platform
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.artifact_answers import COVERAGE_ASK, prompt_text
from tests.platforms import NO_RATE_LIMITS, admin_client, eventually, running_platform, sql
from tests.samples import SCRIPT

CRITERIA = ["premise", "structure", "characters", "dialogue", "pacing"]
NO_JSON = "the answer holds no JSON object"


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def writing(tmp_path_factory: pytest.TempPathFactory, claude: FakeAnthropic) -> Iterator[Platform]:
    """The platform writing artifacts with (fake) Claude; a script is analyzed from 3 scenes."""
    settings = {
        "PARLEY_EMBEDDING_PROVIDER": "local",
        "PARLEY_ARTIFACTS_PROVIDER": "anthropic",
        "PARLEY_ANTHROPIC_API_KEY": claude.api_key,
        "PARLEY_ANTHROPIC_BASE_URL": claude.base_url,
        "PARLEY_ANALYZED_AT_SCENES": "3",
    }
    with running_platform(tmp_path_factory.mktemp("writing"), settings | NO_RATE_LIMITS) as started:
        yield started


@pytest.fixture(scope="module")
def api(writing: Platform) -> Iterator[httpx.Client]:
    with admin_client(writing, timeout=60) as client:
        yield client


def analyzed(api: httpx.Client, title: str) -> str:
    """The sample script uploaded as `title`, once it is analyzed and ready; its id."""
    collection = api.post("/v1/collections", json={"name": f"coverage-{uuid.uuid4().hex[:6]}"}).json()
    uploaded = api.post(
        f"/v1/collections/{collection['id']}/documents",
        files={"file": ("night-shift.fountain", SCRIPT.encode(), "text/x-fountain")},
        data={"title": title},
    )
    assert uploaded.status_code == 202, uploaded.text
    document_id = str(uploaded.json()["id"])

    def ready() -> dict[str, Any] | None:
        document: dict[str, Any] = api.get(f"/v1/documents/{document_id}").json()
        assert document["status"] != "failed", document["error"]
        return document if document["status"] == "ready" else None

    document = eventually(ready, within=120, what=f"{title} analyzed")
    assert document["analysis_state"] == "analyzed", document
    assert "paused" not in document.get("message", ""), document
    return document_id


def the_coverage(api: httpx.Client, document_id: str) -> dict[str, Any]:
    found = api.get(f"/v1/documents/{document_id}/artifacts", params={"kind": "coverage"})
    assert found.status_code == 200, found.text
    [report] = found.json()["artifacts"]
    assert (report["kind"], report["key"], report["stale"]) == ("coverage", "coverage", False)
    return dict(report)


def billed(platform: Platform, document_id: str) -> list[tuple[Any, ...]]:
    """The usage rows of the document's coverage calls: (request id, kind, output tokens, cost)."""
    return sql(
        platform,
        "SELECT request_id, kind, output_tokens, cost_micros FROM usage.usage_events "
        "WHERE request_id LIKE %s ORDER BY request_id",
        f"{document_id}:coverage:coverage:%",
    )


def test_an_analyzed_script_gets_a_coverage_report_the_model_wrote_citing_its_scenes_and_billed(
    api: httpx.Client, writing: Platform, claude: FakeAnthropic
) -> None:
    document_id = analyzed(api, "The Night Shift")

    report = the_coverage(api, document_id)
    content = report["content"]
    assert report["model"].startswith("anthropic/") and content["method"] == "model", content
    assert "fallback" not in content
    assert "ANNA" in content["logline"] and content["synopsis"].startswith("It opens at INT. DINER - NIGHT")
    lead = content["character_breakdown"][0]
    assert (lead["name"], lead["scenes"], lead["first_scene"], lead["last_scene"]) == ("ANNA", 3, "1", "3")
    assert [score["criterion"] for score in content["scores"]] == CRITERIA
    scenes = {row["scene"] for row in api.get(f"/v1/documents/{document_id}/breakdown").json()["scenes"]}
    assert scenes == {"1", "2", "3"}
    for score in content["scores"]:
        assert 1 <= score["score"] <= 10 and score["why"]
        assert score["scenes"] and set(score["scenes"]) <= scenes, score
    assert content["strengths"] and content["weaknesses"]

    # The model read the script's other artifacts, kept before it: its outline and main characters' sheets.
    prompts = [prompt_text(r.body["messages"]) for r in claude.received]
    coverage_prompts = [text for text in prompts if COVERAGE_ASK in text and '"The Night Shift"' in text]
    assert len(coverage_prompts) == 1, "one call: the first answer was used"
    assert "Its outline:" in coverage_prompts[0] and "Its main characters' sheets:" in coverage_prompts[0]

    # Billed once, as a summary, for the tokens the report took.
    rows = eventually(lambda: billed(writing, document_id), within=30, what="the coverage call is billed")
    assert [(request_id.rsplit(":", 1)[1], kind) for request_id, kind, _, _ in rows] == [("1", "summary")]
    assert rows[0][2] == report["tokens"] > 0 and rows[0][3] > 0


def test_a_coverage_the_model_cannot_write_is_extracted_saying_why_and_both_attempts_are_billed(
    api: httpx.Client, writing: Platform, claude: FakeAnthropic
) -> None:
    claude.behaviour.writes_artifacts = False  # the fake answers the coverage prompt in prose
    try:
        document_id = analyzed(api, "The Night Shift, again")
    finally:
        claude.behaviour.writes_artifacts = True

    report = the_coverage(api, document_id)
    content = report["content"]
    assert (report["model"], content["method"]) == ("local/extractive", "extractive")
    assert content["fallback"] == "the model's answers could not be used, twice; extracted from the text instead"
    assert content["fallback_reason"] == NO_JSON
    assert {score["criterion"] for score in content["scores"]} <= {
        "structure",
        "pacing",
        "dialogue balance",
        "character focus",
    }
    rows = eventually(lambda: len(rows := billed(writing, document_id)) == 2 and rows, within=30, what="both billed")
    assert [(request_id.rsplit(":", 1)[1], kind) for request_id, kind, _, _ in rows] == [
        ("1", "summary"),
        ("2", "summary"),
    ]
