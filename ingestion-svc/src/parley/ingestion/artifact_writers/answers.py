"""Model answers: the JSON asked for each kind, as pydantic models, validated before it is used.
A cited scene number must be one of the script's (a coverage score's are sifted instead: the
script's are kept, the rest dropped); `Unusable` says why an answer cannot be used, in words the
retry prompt repeats to the model."""

import logging
from collections.abc import Callable, Sequence
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from parley.ingestion.artifact_writers.drafts import JUSTIFYING_SCENES, RELATIONSHIPS, ThreadType

log = logging.getLogger(__name__)


class Unusable(Exception):
    """A model's answer that cannot be used: why, in words the retry prompt repeats to the model."""


def scene_number(value: str) -> str:
    return value.strip().removeprefix("Scene ").removeprefix("scene ").strip("# ")


SceneNumber = Annotated[str, AfterValidator(scene_number)]
Text = Annotated[str, Field(min_length=1, max_length=1_500)]
LongText = Annotated[str, Field(min_length=1, max_length=4_000)]


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, coerce_numbers_to_str=True)

    def cited(self) -> list[str]:
        """The scene numbers the answer cites: each must be one of the script's."""
        return []


class SceneCardAnswer(Answer):
    key: str
    what_happens: Text
    conflict: Text
    character_change: Text
    plot_progression: Text
    tone: Text


class SectionCardAnswer(Answer):
    key: str
    summary: Text
    key_points: list[Text] = Field(default_factory=list, max_length=5)


class CardsAnswer(Answer):
    # Each card is validated on its own, so one bad card costs only itself.
    cards: list[dict[str, object]]


class ActAnswer(Answer):
    act: Text
    scenes: list[SceneNumber] = Field(min_length=1)
    summary: Text


class TurningPointAnswer(Answer):
    scene: SceneNumber
    label: Text
    what_happens: Text


class ScreenplayOutlineAnswer(Answer):
    logline: Text
    act_structure: list[ActAnswer] = Field(min_length=1, max_length=8)
    turning_points: list[TurningPointAnswer] = Field(min_length=1, max_length=8)
    central_conflict: Text

    def cited(self) -> list[str]:
        return [number for act in self.act_structure for number in act.scenes] + [
            point.scene for point in self.turning_points
        ]


class DocumentPartAnswer(Answer):
    heading: Text
    summary: Text


class DocumentOutlineAnswer(Answer):
    summary: Text
    parts: list[DocumentPartAnswer] = Field(max_length=20)


class RelationshipAnswer(Answer):
    character: Text
    relationship: Text


class PivotalSceneAnswer(Answer):
    scene: SceneNumber
    why: Text


class CharacterSheetAnswer(Answer):
    want: Text
    need: Text
    arc: Text
    relationships: list[RelationshipAnswer] = Field(max_length=RELATIONSHIPS)
    pivotal_scenes: list[PivotalSceneAnswer] = Field(min_length=1, max_length=5)

    def cited(self) -> list[str]:
        return [pivotal.scene for pivotal in self.pivotal_scenes]


class PlotThreadAnswer(Answer):
    name: Text
    thread_type: ThreadType
    scenes: list[SceneNumber] = Field(min_length=1)
    description: Text


class PlotThreadsAnswer(Answer):
    threads: list[PlotThreadAnswer] = Field(max_length=12)

    def cited(self) -> list[str]:
        return [number for thread in self.threads for number in thread.scenes]


class CriterionScoreAnswer(Answer):
    criterion: Text
    score: int = Field(ge=1, le=10)
    scenes: list[SceneNumber] = Field(min_length=1, max_length=50)
    why: Text


class CoverageCharacterAnswer(Answer):
    name: Text
    role: Text
    description: Text


class CoverageAnswer(Answer):
    logline: Text
    synopsis: LongText
    character_breakdown: list[CoverageCharacterAnswer] = Field(min_length=1, max_length=8)
    strengths: list[Text] = Field(min_length=1, max_length=5)
    weaknesses: list[Text] = Field(min_length=1, max_length=5)
    scores: list[CriterionScoreAnswer] = Field(min_length=1, max_length=10)


AnswerT = TypeVar("AnswerT", bound=Answer)


def problems_of(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, item['loc'])) or 'answer'}: {item['msg']}" for item in error.errors()[:3])


def read_answer(answer_type: type[AnswerT], text: str, scenes: frozenset[str]) -> AnswerT:
    """The answer's JSON object (a model may wrap it in prose or a code fence), validated."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise Unusable("the answer holds no JSON object")
    try:
        answer = answer_type.model_validate_json(text[start : end + 1])
    except ValidationError as error:
        raise Unusable(problems_of(error)) from None
    unknown = [number for number in answer.cited() if number not in scenes]
    if unknown:
        raise Unusable(f"scene numbers that are not in the script: {', '.join(unknown[:5])}")
    return answer


def reader(answer_type: type[AnswerT], scenes: frozenset[str]) -> Callable[[str], AnswerT]:
    return lambda text: read_answer(answer_type, text, scenes)


def read_coverage(text: str, scenes: frozenset[str], criteria: Sequence[str]) -> CoverageAnswer:
    """A coverage answer scoring each of `criteria` once (by name, any case), in their order. A
    score's scene numbers the script lacks are dropped, and it keeps its first `JUSTIFYING_SCENES`;
    a score left citing none cannot be used."""
    answer = read_answer(CoverageAnswer, text, scenes)
    by_name: dict[str, CriterionScoreAnswer] = {}
    for score in answer.scores:
        name = " ".join(score.criterion.lower().split())
        if name not in criteria:
            asked = ", ".join(criteria)
            raise Unusable(f"a score for {score.criterion!r}, not one of the criteria asked for ({asked})")
        if name in by_name:
            raise Unusable(f"two scores for {name!r}")
        kept = list(dict.fromkeys(number for number in score.scenes if number in scenes))
        if not kept:
            raise Unusable(f"the {name!r} score cites no scene of the script ({', '.join(score.scenes[:5])})")
        if len(kept) < len(score.scenes):
            dropped = sorted(set(score.scenes) - set(kept))
            log.warning("coverage score %r cited scenes the script lacks, dropped: %s", name, dropped)
        by_name[name] = score.model_copy(update={"criterion": name, "scenes": kept[:JUSTIFYING_SCENES]})
    missing = [name for name in criteria if name not in by_name]
    if missing:
        raise Unusable(f"no score for {', '.join(missing)}")
    return answer.model_copy(update={"scores": [by_name[name] for name in criteria]})
