"""The coverage report, extracted: every score on a named criterion, from a counted figure, with
scenes of the script that justify it; strengths and weaknesses follow from the scores."""

from typing import Any

from parley.ingestion.coverage import coverage
from parley.ingestion.formats import parse_document

SCRIPT = "Title: Two Rivers\n\n" + "\n\n".join(
    f"EXT. RIVER {n} - DAY\n\nThe water rises past the {n}th marker.\n\nANN\nWe cross now.\n\n"
    + ("BOB\nNot yet.\n\n" if n % 2 else "")
    for n in range(1, 7)
)


def test_a_coverage_report_scores_named_criteria_with_the_scenes_that_justify_them() -> None:
    sections: Any = parse_document(SCRIPT.encode(), filename="two.fountain", declared="").sections
    draft = coverage("Two Rivers", sections)
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
