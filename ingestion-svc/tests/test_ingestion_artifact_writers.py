"""Artifact writers: the extractive one on a small script of our own (every number checked by hand)
and on the real scripts in ../shared/data; the model one through an in-test Completer (our own
seam); ChatCompleter against an in-test chat-svc on a real gRPC server."""

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import grpc
import pytest

from parley.ingestion.artifact_writers import (
    CARD_BATCH_SCENES,
    DIGEST_TOKENS,
    EXTRACTIVE_MODEL,
    FALLBACK_NOTE,
    ArtifactDraft,
    ExtractiveWriter,
    ModelWriter,
    build_writer,
    main_characters,
)
from parley.ingestion.clients import ChatCompleter, Completion, Owner
from parley.ingestion.config import Settings
from parley.ingestion.screenplay import fdx_sections, fountain_sections
from parley.ingestion.screenplay_reports import characters_report
from parley.ingestion.sections import Section, markdown_sections
from parley.ingestion.store import SectionRecord
from parley.kit.errors import BudgetExceeded, Unavailable
from parley.kit.rpc import Context, GrpcServer
from parley.kit.testing import TEST_SIGNER
from parley.kit.tokens import count_tokens
from parley.v1 import chat_pb2, chat_pb2_grpc, common_pb2

SCREENPLAYS = Path(__file__).parents[2] / ".." / "shared" / "data" / "screenplays"
needs_data = pytest.mark.skipif(not SCREENPLAYS.is_dir(), reason=f"the shared test data is not at {SCREENPLAYS}")
OWNER = Owner(tenant_id="tenant-a", user_id="user-a")

# Three acts; ANN and BOB share scenes 1, 2, 12A and 5 (the most of any two); ANN and CAROL share 3
# and 5; "the red door" is mentioned in scenes 1, 3 and 5 (a recurring phrase of the title).
SCRIPT = """Title: The Red Door
Author: Someone

# ACT ONE

INT. KITCHEN - NIGHT #1#

Ann paints the red door. Bob watches from the table. The radio hums.

ANN
Hand me the brush.

BOB
Why would I do that?

ANN
Because I asked.

EXT. GARDEN - DAY #2#

Bob digs a hole by the fence.

ANN
Keep digging!

BOB
No. I won't stop.

# ACT TWO

INT. HALLWAY - NIGHT #3#

Carol knocks on the red door. Nobody answers.

CAROL
Ann? Are you there?

ANN
(muffled)
Go away.

INT. ATTIC - DAY #12A#

Ann and Bob sort old boxes in silence.

BOB
These were your mother's.

ANN
I know.

# ACT THREE

EXT. STREET - NIGHT #4#

Rain. A car waits with its lights off.

EXT. PORCH - DAWN #5#

Ann opens the red door. Bob and Carol stand there.

CAROL
We came to help.

BOB
We all did.

ANN
Then come in.
"""


def records(sections: Sequence[Section]) -> list[SectionRecord]:
    """Parsed sections as the store hands them back (the fields are the same by name)."""
    document_id = uuid.uuid4()
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
        for section in sections
    ]


def script() -> list[SectionRecord]:
    return records(fountain_sections(SCRIPT))


def real_script(name: str) -> list[SectionRecord]:
    path = SCREENPLAYS / name
    return records(fdx_sections(path.read_bytes()) if path.suffix == ".fdx" else fountain_sections(path.read_text()))


def scene_numbers(sections: Sequence[SectionRecord]) -> list[str]:
    return [section.scene.number for section in sections if section.scene is not None]


def flat(text: str) -> str:
    return " ".join(text.split())


# --- The extractive writer -------------------------------------------------------------------------------


async def test_a_card_per_scene_cites_its_number_and_quotes_the_scene() -> None:
    sections = script()
    cards = await ExtractiveWriter().scene_cards(owner=OWNER, title="The Red Door", sections=sections)

    assert [card.key for card in cards] == ["1", "2", "3", "12A", "4", "5"]  # no card for the title page
    scene_sections = [section for section in sections if section.scene is not None]
    for card, section in zip(cards, scene_sections, strict=True):
        assert card.kind == "scene_card"
        assert card.content["scene"] == card.key
        assert card.source_sha256 == section.content_sha256
        assert card.model == EXTRACTIVE_MODEL
        assert card.content["method"] == "extractive"
        assert card.tokens == count_tokens(json.dumps(card.content, ensure_ascii=False, separators=(",", ":")))
        assert card.tokens <= 200
        assert str(card.content["what_happens"]) in flat(section.text)
    first = cards[0].content
    assert first["what_happens"] == "Ann paints the red door. Bob watches from the table."
    assert first["characters"] == ["ANN", "BOB"]
    assert first["tone"] == {"int_ext": "INT", "time_of_day": "NIGHT", "length_eighths": 2, "pace": "dialogue-led"}
    assert first["conflict"] == {"speaker": "BOB", "line": "Why would I do that?", "method": "cues: question"}
    # A refusal outweighs the exclamation that came first.
    assert cards[1].content["conflict"] == {"speaker": "BOB", "line": "No.", "method": "cues: refusal"}
    # A scene nobody speaks in has no conflict line: nothing to quote, so nothing is said.
    assert "conflict" not in cards[4].content
    assert cards[4].content["what_happens"] == "Rain. A car waits with its lights off."


async def test_extraction_is_the_same_every_time() -> None:
    writer = ExtractiveWriter()

    async def everything() -> list[ArtifactDraft]:
        sections = script()
        return [
            *await writer.scene_cards(owner=OWNER, title="The Red Door", sections=sections),
            await writer.outline(owner=OWNER, title="The Red Door", sections=sections),
            *await writer.character_sheets(
                owner=OWNER, title="The Red Door", sections=sections, characters=main_characters(sections)
            ),
            *await writer.plot_threads(owner=OWNER, title="The Red Door", sections=sections),
        ]

    first, second = await everything(), await everything()
    assert [(draft.key, draft.content, draft.tokens) for draft in first] == [
        (draft.key, draft.content, draft.tokens) for draft in second
    ]


async def test_the_outline_follows_the_scripts_acts_and_its_two_leads() -> None:
    sections = script()
    outline = await ExtractiveWriter().outline(owner=OWNER, title="The Red Door", sections=sections)

    content = outline.content
    assert (outline.kind, outline.key, outline.model) == ("outline", "outline", EXTRACTIVE_MODEL)
    assert content["scenes"] == 6
    assert content["logline"] == {
        "title": "The Red Door",
        "main_characters": [row.name for row in characters_report(sections)[:3]],
        "opening": "Ann paints the red door. Bob watches from the table.",
    }
    acts = content["act_structure"]
    assert isinstance(acts, dict)
    assert acts["basis"] == "the script's own acts (its top-level sections)"
    assert [(act["act"], act["first_scene"], act["last_scene"]) for act in acts["acts"]] == [
        ("ACT ONE", "1", "2"),
        ("ACT TWO", "3", "12A"),
        ("ACT THREE", "4", "5"),
    ]
    turning_points = content["turning_points"]
    assert isinstance(turning_points, list)
    assert [point["at_percent"] for point in turning_points] == [25, 50, 75]
    assert {point["scene"] for point in turning_points} <= set(scene_numbers(sections))
    assert content["central_conflict"] == {
        "characters": ["ANN", "BOB"],
        "shared_scenes": 4,
        "first_shared_scene": "1",
        "last_shared_scene": "5",
        "method": "the two characters who speak in the most scenes together",
    }
    assert outline.tokens <= 500


async def test_without_acts_a_script_is_cut_in_thirds_of_its_length() -> None:
    sections = records(fountain_sections(re.sub(r"^# ACT .*$", "", SCRIPT, flags=re.MULTILINE)))
    outline = await ExtractiveWriter().outline(owner=OWNER, title="The Red Door", sections=sections)

    acts = outline.content["act_structure"]
    assert isinstance(acts, dict)
    assert acts["basis"] == "thirds of the script's length"
    assert [act["act"] for act in acts["acts"]] == ["1 of 3", "2 of 3", "3 of 3"]
    assert sum(act["scenes"] for act in acts["acts"]) == 6


async def test_character_sheets_cite_their_scenes_partners_and_lines() -> None:
    sections = script()
    assert main_characters(sections) == ["ANN", "BOB", "CAROL"]

    sheets = await ExtractiveWriter().character_sheets(
        owner=OWNER, title="The Red Door", sections=sections, characters=["ANN", "carol (V.O.)", "NOBODY"]
    )

    assert [sheet.key for sheet in sheets] == ["ANN", "CAROL"]  # normalised; nobody who never speaks
    ann = sheets[0].content
    assert ann["scene_count"] == 5
    assert (ann["first_scene"], ann["last_scene"]) == ("1", "5")
    assert ann["relationships"] == [{"with": "BOB", "shared_scenes": 4}, {"with": "CAROL", "shared_scenes": 2}]
    assert [pivotal["scene"] for pivotal in ann["pivotal_scenes"]] == ["1", "2", "5"]  # where she says the most
    assert ann["arc_evidence"] == {
        "first_line": {"scene": "1", "line": "Hand me the brush."},
        "last_line": {"scene": "5", "line": "Then come in."},
    }
    for absent in ("want", "need", "arc"):  # judgements extraction cannot make are left out
        assert absent not in ann


async def test_plot_threads_follow_the_characters_and_a_recurring_title_phrase() -> None:
    sections = script()
    threads = await ExtractiveWriter().plot_threads(owner=OWNER, title="The Red Door", sections=sections)

    by_key = {thread.key: thread.content for thread in threads}
    assert list(by_key) == ["arc-of-ann", "arc-of-bob", "arc-of-carol", "ann-and-bob", "ann-and-carol", "red-door"]
    assert by_key["arc-of-bob"]["scenes"] == ["1", "2", "12A", "5"]
    assert (by_key["ann-and-bob"]["thread_type"], by_key["ann-and-bob"]["scenes"]) == ("plot", ["1", "2", "12A", "5"])
    assert (by_key["ann-and-carol"]["thread_type"], by_key["ann-and-carol"]["scenes"]) == ("subplot", ["3", "5"])
    assert (by_key["red-door"]["thread_type"], by_key["red-door"]["scenes"]) == ("theme", ["1", "3", "5"])

    untitled = await ExtractiveWriter().plot_threads(owner=OWNER, title="Untitled", sections=sections)
    assert all(thread.content["thread_type"] != "theme" for thread in untitled)  # no theme is made up


async def test_a_document_without_scenes_gets_section_cards_and_an_outline_only() -> None:
    sections = records(
        markdown_sections(
            "# Setup\n\nInstall the tool. Then run it once.\n\n## Options\n\nEvery option has a default.\n\n"
            "# Use\n\nRun it on a folder."
        )
    )
    writer = ExtractiveWriter()

    cards = await writer.scene_cards(owner=OWNER, title="Manual", sections=sections)
    outline = await writer.outline(owner=OWNER, title="Manual", sections=sections)

    assert [card.key for card in cards] == ["0", "1", "2"]
    assert cards[0].content == {
        "method": "extractive",
        "section": 0,
        "heading": "Setup",
        "summary": "Install the tool. Then run it once.",
    }
    assert cards[1].content["heading"] == "Setup › Options"
    assert [entry["heading"] for entry in outline.content["sections"]] == ["Setup", "Setup › Options", "Use"]
    assert await writer.character_sheets(owner=OWNER, title="Manual", sections=sections, characters=["ANN"]) == []
    assert await writer.plot_threads(owner=OWNER, title="Manual", sections=sections) == []


@needs_data
@pytest.mark.parametrize("name", ["The-Last-Birthday-Card.fountain", "Brick-and-Steel.fountain", "TestFDX-FD.fdx"])
async def test_real_scripts_get_small_cards_and_sheets_for_their_top_characters(name: str) -> None:
    sections = real_script(name)
    numbers = set(scene_numbers(sections))
    writer = ExtractiveWriter()

    cards = await writer.scene_cards(owner=OWNER, title=name, sections=sections)
    assert [card.key for card in cards] == scene_numbers(sections)
    assert max(card.tokens for card in cards) <= 200

    main = main_characters(sections)
    report = characters_report(sections)
    assert main == [row.name for row in report if row.scenes >= 2][:5]
    sheets = await writer.character_sheets(owner=OWNER, title=name, sections=sections, characters=main)
    assert [sheet.key for sheet in sheets] == main
    for sheet, row in zip(sheets, report, strict=False):
        assert sheet.content["scene_count"] == row.scenes
        assert (sheet.content["first_scene"], sheet.content["last_scene"]) == (row.first_scene, row.last_scene)
        assert {pivotal["scene"] for pivotal in sheet.content["pivotal_scenes"]} <= numbers
        assert sheet.tokens <= 300

    outline = await writer.outline(owner=OWNER, title=name, sections=sections)
    assert {point["scene"] for point in outline.content["turning_points"]} <= numbers
    threads = await writer.plot_threads(owner=OWNER, title=name, sections=sections)
    assert all(set(thread.content["scenes"]) <= numbers for thread in threads)


@needs_data
async def test_the_last_birthday_card_in_numbers_checked_by_hand() -> None:
    sections = real_script("The-Last-Birthday-Card.fountain")
    writer = ExtractiveWriter()

    outline = await writer.outline(owner=OWNER, title="The Last Birthday Card", sections=sections)
    sheets = await writer.character_sheets(
        owner=OWNER, title="The Last Birthday Card", sections=sections, characters=["SCOTT"]
    )

    assert [act["act"] for act in outline.content["act_structure"]["acts"]] == [
        "ACT I",
        "ACT II: A New Day",
        "ACT III: The Showdown",
    ]
    assert outline.content["central_conflict"]["characters"] == ["BAXTER", "SCOTT"]
    scott = sheets[0].content
    assert scott["relationships"][0] == {"with": "BAXTER", "shared_scenes": 4}
    assert scott["arc_evidence"]["first_line"] == {"scene": "5", "line": "I got another birthday card today."}


# --- The model writer, through an in-test Completer -------------------------------------------------------

Answer = Callable[[str], str]


class ScriptedCompleter:
    """Answers each prompt with `answer(prompt)`; counts tokens as a provider would."""

    def __init__(self, *answers: Answer) -> None:
        self._answers = list(answers)
        self.prompts: list[str] = []
        self.request_ids: list[str] = []
        self.output_tokens = 0

    async def complete(self, *, owner: Owner, system: str, prompt: str, max_tokens: int, request_id: str) -> Completion:
        assert owner == OWNER and system and max_tokens > 0
        answer = self._answers[min(len(self.prompts), len(self._answers) - 1)]
        self.prompts.append(prompt)
        self.request_ids.append(request_id)
        text = answer(prompt)
        self.output_tokens += count_tokens(text)
        return Completion(
            text=text,
            provider="fake",
            model="m1",
            input_tokens=count_tokens(system + prompt),
            output_tokens=count_tokens(text),
        )


def good_cards(prompt: str) -> str:
    keys = re.findall(r'^--- key "(.+?)" ---$', prompt, flags=re.MULTILINE)
    cards = [
        {
            "key": key,
            "what_happens": f"Things happen in {key}.",
            "conflict": "Someone wants something.",
            "character_change": "Someone changes.",
            "plot_progression": "The story moves.",
            "tone": "Quiet.",
        }
        for key in keys
    ]
    return "Here you are:\n```json\n" + json.dumps({"cards": cards}) + "\n```"


def not_json(prompt: str) -> str:
    return "I would rather write prose."


async def test_model_cards_are_used_batched_and_charged_their_tokens() -> None:
    sections = script()
    completer = ScriptedCompleter(good_cards)

    cards = await ModelWriter(completer).scene_cards(owner=OWNER, title="The Red Door", sections=sections)

    assert [card.key for card in cards] == ["1", "2", "3", "12A", "4", "5"]
    assert len(completer.prompts) == 1  # six scenes, one completion
    assert all(card.model == "fake/m1" for card in cards)
    assert sum(card.tokens for card in cards) == completer.output_tokens
    card = cards[3].content
    assert card["method"] == "model"
    assert (card["scene"], card["heading"], card["characters"]) == ("12A", "INT. ATTIC - DAY", ["BOB", "ANN"])
    assert card["what_happens"] == "Things happen in 12A."
    assert cards[3].source_sha256 == sections[4].content_sha256


async def test_model_cards_that_fail_twice_are_extracted_instead() -> None:
    sections = script()
    completer = ScriptedCompleter(not_json)

    cards = await ModelWriter(completer).scene_cards(owner=OWNER, title="The Red Door", sections=sections)
    extracted = await ExtractiveWriter().scene_cards(owner=OWNER, title="The Red Door", sections=sections)

    assert len(completer.prompts) == 2  # one retry, then no more spending
    assert "could not be used (the answer holds no JSON object)" in completer.prompts[1]
    for card, plain in zip(cards, extracted, strict=True):
        assert card.model == EXTRACTIVE_MODEL
        assert card.content == {
            **plain.content,
            "fallback": FALLBACK_NOTE,
            "fallback_reason": "the answer holds no JSON object",
        }
        assert card.source_sha256 == plain.source_sha256


async def test_a_card_missing_from_an_answer_is_asked_again_alone() -> None:
    sections = script()

    def all_but_12a(prompt: str) -> str:
        answer = json.loads(good_cards(prompt).split("```json\n")[1].split("\n```")[0])
        return json.dumps({"cards": [card for card in answer["cards"] if card["key"] != "12A"]})

    completer = ScriptedCompleter(all_but_12a, good_cards)

    cards = await ModelWriter(completer).scene_cards(owner=OWNER, title="The Red Door", sections=sections)

    assert len(completer.prompts) == 2
    assert re.findall(r'--- key "(.+?)" ---', completer.prompts[1]) == ["12A"]
    assert "no card for keys 12A" in completer.prompts[1]
    assert all(card.content["method"] == "model" for card in cards)


async def test_cards_go_in_batches_of_a_bounded_size() -> None:
    many = "\n\n".join(f"INT. ROOM {n} - DAY\n\nAnn waits in room {n}.\n\nANN\nStill here." for n in range(1, 20))
    sections = records(fountain_sections(many))
    completer = ScriptedCompleter(good_cards)

    cards = await ModelWriter(completer).scene_cards(owner=OWNER, title="Rooms", sections=sections)

    assert len(cards) == 19
    assert len(completer.prompts) == -(-19 // CARD_BATCH_SCENES)
    assert all(card.content["method"] == "model" for card in cards)


def outline_answer(scene: str) -> Answer:
    def answer(prompt: str) -> str:
        return json.dumps(
            {
                "logline": "A woman repaints a door while her family circles.",
                "act_structure": [{"act": "One", "scenes": ["1", "2"], "summary": "It starts."}],
                "turning_points": [{"scene": scene, "label": "midpoint", "what_happens": "Boxes."}],
                "central_conflict": "Ann against Bob.",
            }
        )

    return answer


async def test_a_model_outline_is_used_when_it_cites_real_scenes() -> None:
    sections = script()
    completer = ScriptedCompleter(outline_answer("12A"))

    outline = await ModelWriter(completer).outline(owner=OWNER, title="The Red Door", sections=sections)

    assert outline.model == "fake/m1"
    assert outline.tokens == completer.output_tokens
    assert outline.content["method"] == "model"
    assert outline.content["turning_points"] == [{"scene": "12A", "label": "midpoint", "what_happens": "Boxes."}]
    assert "Ann paints the red door." in completer.prompts[0]  # the digest carries the scenes' openings


async def test_a_model_outline_citing_a_scene_the_script_lacks_falls_back() -> None:
    sections = script()
    completer = ScriptedCompleter(outline_answer("99"))

    outline = await ModelWriter(completer).outline(owner=OWNER, title="The Red Door", sections=sections)

    assert len(completer.prompts) == 2
    assert "scene numbers that are not in the script: 99" in completer.prompts[1]
    assert outline.model == EXTRACTIVE_MODEL
    assert outline.content["method"] == "extractive"
    assert outline.content["fallback"] == FALLBACK_NOTE


async def test_a_long_script_fits_the_outline_prompt() -> None:
    scenes = "\n\n".join(
        f"INT. ROOM {n} - DAY\n\n"
        + "Ann crosses the long room and opens every window, one by one. " * 6
        + f"\n\nANN\nLine {n}.\n\nBOB\nReply {n}."
        for n in range(1, 181)
    )
    sections = records(fountain_sections(scenes))
    completer = ScriptedCompleter(outline_answer("90"))

    await ModelWriter(completer).outline(owner=OWNER, title="Long", sections=sections)

    assert count_tokens(completer.prompts[0]) <= DIGEST_TOKENS + 1_000
    assert "180 | INT. ROOM 180 - DAY" in completer.prompts[0]  # the whole script, cut per scene


async def test_model_sheets_keep_the_counted_facts_and_record_tokens_and_model() -> None:
    sections = script()

    def sheet(prompt: str) -> str:
        return json.dumps(
            {
                "want": "To finish the door.",
                "need": "To let people in.",
                "arc": "From shut to open.",
                "relationships": [{"character": "Bob", "relationship": "Her brother."}],
                "pivotal_scenes": [{"scene": "5", "why": "She opens the door."}],
            }
        )

    completer = ScriptedCompleter(sheet)

    sheets = await ModelWriter(completer).character_sheets(
        owner=OWNER, title="The Red Door", sections=sections, characters=["ANN", "BOB"]
    )

    assert [draft.key for draft in sheets] == ["ANN", "BOB"]
    assert len(completer.prompts) == 2
    ann = sheets[0]
    assert (ann.model, ann.tokens) == ("fake/m1", completer.output_tokens // 2)
    assert (ann.content["scene_count"], ann.content["first_scene"]) == (5, "1")  # counted, not asked
    assert ann.content["relationships"] == [{"with": "BOB", "shared_scenes": 4, "relationship": "Her brother."}]
    assert ann.content["pivotal_scenes"] == [{"scene": "5", "why": "She opens the door."}]


async def test_model_threads_get_slug_keys_and_share_the_completions_tokens() -> None:
    sections = script()

    def threads(prompt: str) -> str:
        return json.dumps(
            {
                "threads": [
                    {"name": "Ann opens up", "thread_type": "character_arc", "scenes": [1, "5"], "description": "x"},
                    {"name": "The door", "thread_type": "theme", "scenes": ["Scene 3"], "description": "y"},
                ]
            }
        )

    completer = ScriptedCompleter(threads)

    drafts = await ModelWriter(completer).plot_threads(owner=OWNER, title="The Red Door", sections=sections)

    assert [draft.key for draft in drafts] == ["ann-opens-up", "the-door"]
    assert drafts[0].content["scenes"] == ["1", "5"]
    assert drafts[1].content["scenes"] == ["3"]
    assert sum(draft.tokens for draft in drafts) == completer.output_tokens


async def test_a_refused_budget_reaches_the_caller() -> None:
    class Broke:
        async def complete(
            self, *, owner: Owner, system: str, prompt: str, max_tokens: int, request_id: str
        ) -> Completion:
            raise BudgetExceeded("the monthly budget is spent")

    writer = ModelWriter(Broke())
    with pytest.raises(BudgetExceeded):
        await writer.scene_cards(owner=OWNER, title="The Red Door", sections=script())
    with pytest.raises(BudgetExceeded):
        await writer.character_sheets(owner=OWNER, title="The Red Door", sections=script(), characters=["ANN"])


def test_local_means_extraction_and_a_provider_needs_a_completer() -> None:
    infra = {"env": "test", "database_url": "postgresql+asyncpg://unused", "nats_url": "nats://unused"}
    local = Settings.model_validate(infra)
    assert isinstance(build_writer(local, None), ExtractiveWriter)
    with pytest.raises(ValueError, match="PARLEY_CHAT_TARGET"):
        Settings.model_validate(infra | {"artifacts_provider": "anthropic"})
    remote = Settings.model_validate(
        infra | {"artifacts_provider": "anthropic", "artifacts_model": "claude-x", "chat_target": "127.0.0.1:1"}
    )
    assert isinstance(build_writer(remote, ScriptedCompleter(not_json)), ModelWriter)
    with pytest.raises(ValueError, match="no completer"):
        build_writer(remote, None)


# --- ChatCompleter against an in-test chat-svc ---------------------------------------------------------


class CompleteOnly(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self) -> None:
        self.seen: list[tuple[chat_pb2.CompleteRequest, dict[str, str]]] = []
        self.fail_with: grpc.StatusCode | None = None

    async def Complete(self, request: chat_pb2.CompleteRequest, context: Context) -> chat_pb2.CompleteResponse:
        self.seen.append((request, {key: str(value) for key, value in context.invocation_metadata() or ()}))
        if self.fail_with is not None:
            await context.abort(self.fail_with, "no")
        return chat_pb2.CompleteResponse(
            text='{"ok": true}',
            provider="anthropic",
            model="claude-x",
            usage=common_pb2.TokenUsage(input_tokens=120, output_tokens=7),
        )


@pytest.fixture
async def chat() -> AsyncIterator[tuple[CompleteOnly, ChatCompleter]]:
    servicer = CompleteOnly()
    server = GrpcServer(port=0, host="127.0.0.1", signer=TEST_SIGNER)
    server.add(chat_pb2_grpc.add_ChatServiceServicer_to_server, servicer, "parley.v1.ChatService")
    await server.start()
    completer = ChatCompleter(
        f"127.0.0.1:{server.port}", deadline_seconds=5, provider="anthropic", model="claude-x", signer=TEST_SIGNER
    )
    try:
        yield servicer, completer
    finally:
        await completer.close()
        await server.stop(0)


async def test_chat_completer_sends_the_owner_and_reads_the_usage(
    chat: tuple[CompleteOnly, ChatCompleter],
) -> None:
    servicer, completer = chat

    completion = await completer.complete(
        owner=OWNER, system="be brief", prompt="outline it", max_tokens=300, request_id="doc:outline:outline:1"
    )

    assert completion == Completion(
        text='{"ok": true}', provider="anthropic", model="claude-x", input_tokens=120, output_tokens=7
    )
    request, metadata = servicer.seen[0]
    assert (request.system, request.prompt, request.max_tokens) == ("be brief", "outline it", 300)
    assert (request.provider, request.model, request.request_id) == ("anthropic", "claude-x", "doc:outline:outline:1")
    assert request.kind == ""  # CompleteRequest's default: billed as summary
    assert (metadata["x-tenant-id"], metadata["x-user-id"]) == ("tenant-a", "user-a")


@pytest.mark.parametrize(
    ("status", "error"),
    [(grpc.StatusCode.RESOURCE_EXHAUSTED, BudgetExceeded), (grpc.StatusCode.UNAVAILABLE, Unavailable)],
)
async def test_chat_completer_maps_refusals_to_kit_errors(
    chat: tuple[CompleteOnly, ChatCompleter], status: grpc.StatusCode, error: type[Exception]
) -> None:
    servicer, completer = chat
    servicer.fail_with = status

    with pytest.raises(error):
        await completer.complete(owner=OWNER, system="s", prompt="p", max_tokens=10, request_id="r")
