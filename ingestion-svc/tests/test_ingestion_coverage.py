"""The coverage report. Extracted: every score on a named criterion, from a counted figure, with
scenes of the script that justify it; strengths and weaknesses follow from the scores. Written by
a model (through an in-test Completer, our own seam): read from the script's other artifacts, its
scores checked and its cited scenes sifted, or extracted instead, saying why."""

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from parley.ingestion.artifact_writers import EXTRACTIVE_MODEL, FALLBACK_NOTE, ExtractiveWriter, ModelWriter
from parley.ingestion.artifact_writers.coverage import extracted_coverage
from parley.ingestion.clients import Completion, Owner
from parley.ingestion.formats import parse_document
from parley.ingestion.store import ArtifactRecord, SectionRecord
from parley.kit.tokens import count_tokens

SCRIPT = "Title: Two Rivers\n\n" + "\n\n".join(
    f"EXT. RIVER {n} - DAY\n\nThe water rises past the {n}th marker.\n\nANN\nWe cross now.\n\n"
    + ("BOB\nNot yet.\n\n" if n % 2 else "")
    for n in range(1, 7)
)
OWNER = Owner(tenant_id="tenant-a", user_id="")
CRITERIA = ["premise", "structure", "characters", "dialogue", "pacing"]


def test_a_coverage_report_scores_named_criteria_with_the_scenes_that_justify_them() -> None:
    sections: Any = parse_document(SCRIPT.encode(), filename="two.fountain", declared="").sections
    draft = extracted_coverage("Two Rivers", sections)
    content = dict(draft.content)
    assert (draft.kind, draft.key, draft.model, content["method"]) == (
        "coverage",
        "coverage",
        "local/extractive",
        "extractive",
    )
    assert content["logline"]["main_characters"] == ["ANN", "BOB"]
    assert content["synopsis"][0] == {"scene": "1", "what_happens": "The water rises past the 1th marker."}
    assert [row["name"] for row in content["character_breakdown"]] == ["ANN", "BOB"]
    scenes = {str(n) for n in range(1, 7)}
    scores = {score["criterion"]: score for score in content["scores"]}
    assert set(scores) == {"structure", "pacing", "dialogue balance", "character focus"}
    assert all(1 <= score["score"] <= 10 and set(score["scenes"]) <= scenes for score in scores.values())
    assert scores["character focus"]["score"] == 10 and scores["character focus"]["scenes"] == ["1", "6"]
    strengths = {line.split(":")[0] for line in content["strengths"]}
    weaknesses = {line.split(":")[0] for line in content["weaknesses"]}
    assert strengths == {name for name, score in scores.items() if score["score"] >= 7}
    assert weaknesses == {name for name, score in scores.items() if score["score"] <= 5}


# --- Written by a model ------------------------------------------------------------------------------


def stored() -> list[SectionRecord]:
    """The script's sections as the store hands them back (the fields are the same by name)."""
    document_id = uuid.uuid4()
    parsed = parse_document(SCRIPT.encode(), filename="two.fountain", declared="").sections
    return [
        SectionRecord(
            id=uuid.uuid4(),
            document_id=document_id,
            ordinal=section.ordinal,
            kind=section.kind,
            heading=section.heading,
            heading_path=section.heading_path,
            page=section.page,
            tokens=section.tokens,
            text=section.text,
            content_sha256=section.content_sha256,
            scene=section.scene,
        )
        for section in parsed
    ]


def kept(kind: str, key: str, content: dict[str, object]) -> ArtifactRecord:
    now = datetime.now(UTC)
    return ArtifactRecord(
        id=uuid.uuid4(),
        tenant_id=OWNER.tenant_id,
        document_id=uuid.uuid4(),
        kind=kind,
        key=key,
        content=content,
        tokens=10,
        model="fake/m1",
        document_version=1,
        source_sha256="",
        changed_scenes=0,
        stale=False,
        created_at=now,
        updated_at=now,
    )


OTHERS = [
    kept("outline", "outline", {"method": "model", "logline": "Two friends wait for the river to fall."}),
    kept("character_sheet", "ANN", {"method": "model", "name": "ANN", "want": "To cross before dark."}),
    kept("scene_card", "3", {"method": "model", "scene": "3", "what_happens": "Bob finally agrees to wade in."}),
]


class ScriptedCompleter:
    """Answers the n-th prompt with the n-th answer (the last one after that); counts tokens as a
    provider would."""

    def __init__(self, *answers: str) -> None:
        self._answers = answers
        self.prompts: list[str] = []
        self.request_ids: list[str] = []
        self.output_tokens: list[int] = []

    async def complete(self, *, owner: Owner, system: str, prompt: str, max_tokens: int, request_id: str) -> Completion:
        assert owner == OWNER and system and max_tokens > 0
        text = self._answers[min(len(self.prompts), len(self._answers) - 1)]
        self.prompts.append(prompt)
        self.request_ids.append(request_id)
        self.output_tokens.append(count_tokens(text))
        return Completion(
            text=text,
            provider="fake",
            model="m1",
            input_tokens=count_tokens(system + prompt),
            output_tokens=count_tokens(text),
        )


def answer(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "logline": "Two friends wait on a rising river, one eager to cross and one afraid.",
        "synopsis": "Ann wants to cross; Bob refuses until the water forces his hand.",
        "character_breakdown": [
            {"name": "Ann", "role": "protagonist", "description": "Impatient, brave."},
            {"name": "The Ferryman", "role": "mentioned", "description": "Never seen."},
        ],
        "strengths": ["A single clear want."],
        "weaknesses": ["Scenes repeat one beat."],
        "scores": [
            {"criterion": name.title(), "score": 4 + index, "scenes": ["2", "Scene 4"], "why": f"{name} is fine."}
            for index, name in enumerate(CRITERIA)
        ],
    }
    return base | changes


async def test_a_model_writes_the_coverage_from_the_scripts_other_artifacts_citing_only_its_scenes() -> None:
    sections = stored()
    written = answer()
    written["scores"][0]["scenes"] = ["99", "2", "2"]  # a scene the script lacks, and one cited twice
    completer = ScriptedCompleter("Coverage:\n```json\n" + json.dumps(written) + "\n```")

    draft = await ModelWriter(completer).coverage(owner=OWNER, title="Two Rivers", sections=sections, artifacts=OTHERS)

    prompt = completer.prompts[0]
    assert prompt.startswith('Write the coverage report of the screenplay "Two Rivers"')
    assert "Criteria: premise, structure, characters, dialogue, pacing." in prompt
    assert "Two friends wait for the river to fall." in prompt and "To cross before dark." in prompt
    assert "3 | EXT. RIVER 3 - DAY | p.1 | ANN, BOB | Bob finally agrees to wade in." in prompt  # from its card
    assert "4 | EXT. RIVER 4 - DAY | p.1 | ANN | The water rises past the 4th marker." in prompt  # no card: the text
    assert completer.request_ids == [f"{sections[0].document_id}:coverage:coverage:1"]

    assert (draft.kind, draft.key, draft.model) == ("coverage", "coverage", "fake/m1")
    assert draft.tokens == completer.output_tokens[0]  # what the model was paid to write
    content = draft.content
    assert (content["method"], content["title"], content["scenes"]) == ("model", "Two Rivers", 6)
    assert content["logline"] == written["logline"] and content["synopsis"] == written["synopsis"]
    assert content["character_breakdown"] == [
        {"name": "ANN", "scenes": 6, "first_scene": "1", "last_scene": "6", "role": "protagonist",
         "description": "Impatient, brave."},
        {"name": "The Ferryman", "role": "mentioned", "description": "Never seen."},
    ]  # fmt: skip
    assert content["scores"] == [
        {"criterion": "premise", "score": 4, "scenes": ["2"], "why": "premise is fine."},
        *(
            {"criterion": name, "score": 4 + index, "scenes": ["2", "4"], "why": f"{name} is fine."}
            for index, name in enumerate(CRITERIA)
            if index
        ),
    ]
    assert (content["strengths"], content["weaknesses"]) == (written["strengths"], written["weaknesses"])


def scores(*changes: tuple[int, dict[str, Any]]) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = answer()["scores"]
    for index, change in changes:
        listed[index] = listed[index] | change
    return listed


UNUSABLE: list[tuple[str, Callable[[], str], str]] = [
    ("prose", lambda: "A fine script, I would say.", "the answer holds no JSON object"),
    ("a score of 11", lambda: json.dumps(answer(scores=scores((1, {"score": 11})))), "less than or equal to 10"),
    ("an unnamed criterion", lambda: json.dumps(answer(scores=scores((2, {"criterion": "vibes"})))), "'vibes'"),
    ("a criterion left out", lambda: json.dumps(answer(scores=scores()[:4])), "no score for pacing"),
    ("a score twice", lambda: json.dumps(answer(scores=[*scores(), scores()[0]])), "two scores for 'premise'"),
    (
        "a score citing no scene of the script",
        lambda: json.dumps(answer(scores=scores((3, {"scenes": ["42", "7"]})))),
        "the 'dialogue' score cites no scene of the script (42, 7)",
    ),
]


@pytest.mark.parametrize(("case", "unusable", "why"), UNUSABLE, ids=[case for case, _, _ in UNUSABLE])
async def test_a_coverage_the_model_gets_wrong_twice_is_extracted_instead_saying_why(
    case: str, unusable: Callable[[], str], why: str
) -> None:
    sections = stored()
    completer = ScriptedCompleter(unusable())

    draft = await ModelWriter(completer).coverage(owner=OWNER, title="Two Rivers", sections=sections, artifacts=OTHERS)
    extracted = await ExtractiveWriter().coverage(owner=OWNER, title="Two Rivers", sections=sections, artifacts=OTHERS)

    assert len(completer.prompts) == 2  # one retry, told why, then no more spending
    assert why in completer.prompts[1].split("\n\n")[-1]
    assert draft.model == EXTRACTIVE_MODEL
    assert {name: value for name, value in draft.content.items() if name not in ("fallback", "fallback_reason")} == (
        extracted.content
    )
    assert draft.content["fallback"] == FALLBACK_NOTE
    assert why in str(draft.content["fallback_reason"])


async def test_a_second_answer_that_can_be_used_is_used() -> None:
    completer = ScriptedCompleter("not yet", json.dumps(answer()))

    draft = await ModelWriter(completer).coverage(owner=OWNER, title="Two Rivers", sections=stored(), artifacts=[])

    assert draft.content["method"] == "model" and "fallback" not in draft.content
    assert draft.tokens == completer.output_tokens[1]
    assert [request_id.rsplit(":", 1)[1] for request_id in completer.request_ids] == ["1", "2"]


async def test_a_feature_length_scripts_coverage_prompt_stays_bounded_and_reaches_its_last_scene() -> None:
    names = ["ANN", "BOB", "CAROL", "DAN", "EVE", "FRANK"]
    long = "\n\n".join(
        f"INT. ROOM {n} - DAY\n\n" + "Ann crosses the long room and opens every window, one by one. " * 6
        + f"\n\n{names[n % 6]}\nLine {n}.\n\n{names[(n + 1) % 6]}\nReply {n}."
        for n in range(1, 191)
    )  # fmt: skip
    parsed = parse_document(long.encode(), filename="long.fountain", declared="").sections
    document_id = uuid.uuid4()
    sections = [
        SectionRecord(id=uuid.uuid4(), document_id=document_id, **{field: getattr(section, field) for field in FIELDS})
        for section in parsed
    ]
    local = ExtractiveWriter()
    others = [
        *await local.scene_cards(owner=OWNER, title="Long", sections=sections),
        await local.outline(owner=OWNER, title="Long", sections=sections),
        *await local.character_sheets(owner=OWNER, title="Long", sections=sections, characters=names[:5]),
        *await local.plot_threads(owner=OWNER, title="Long", sections=sections),
    ]
    completer = ScriptedCompleter(json.dumps(answer()))

    await ModelWriter(completer).coverage(
        owner=OWNER,
        title="Long",
        sections=sections,
        artifacts=[kept(draft.kind, draft.key, dict(draft.content)) for draft in others],
    )

    prompt = completer.prompts[0]
    assert count_tokens(prompt) <= 16_000  # the digest's 8,000, the outline, five sheets, the threads
    assert "\n190 | INT. ROOM 190 - DAY | " in prompt  # the whole script, cut per scene
    assert prompt.count("\n{") >= 1 + 5  # the outline and every sheet, whole


FIELDS = ("ordinal", "kind", "heading", "heading_path", "page", "tokens", "text", "content_sha256", "scene")
