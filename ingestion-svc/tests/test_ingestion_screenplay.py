"""Screenplays: every Fountain feature on small scripts of our own, Final Draft XML read safely,
and golden numbers on the real scripts in ../shared/data, checked by hand (see each test)."""

from pathlib import Path

import pytest

from parley.ingestion.screenplay import fdx_sections, fountain_sections, normalise_cue, parse_scene_heading
from parley.ingestion.screenplay_reports import characters_report, pacing_report
from parley.ingestion.sections import Scene, Section
from parley.kit.errors import InvalidInput

SCREENPLAYS = Path(__file__).parents[2] / ".." / "shared" / "data" / "screenplays"
needs_data = pytest.mark.skipif(not SCREENPLAYS.is_dir(), reason=f"the shared test data is not at {SCREENPLAYS}")


def scenes(sections: list[Section]) -> list[Scene]:
    return [section.scene for section in sections if section.scene is not None]


SCRIPT = """Title: **THE TEST**
Credit: Written by
Author: Someone
Contact:
\tPO Box 1
\tNowhere

# ACT I

= Where it starts.

## The Meeting

INT. KITCHEN - NIGHT #1A#

Ann cooks. [[a note that must vanish]]

/* a whole cut
passage, BOB
Not here.
*/

ANN (V.O.)
(quietly)
Hello there, *friend*.

BOB ^
Hi.

ANN (CONT'D)
Again.

CUT TO:

.FLASHBACK

> THE END <

===

EXT. GARDEN, LATER THAT MORNING

@McGREGOR
Who is there?

> FADE OUT.

# ACT II

I/E. CAR - CONTINUOUS

!BOB WALKS.
"""


def test_fountain_scenes_headings_and_numbers() -> None:
    found = scenes(fountain_sections(SCRIPT))

    assert [(scene.number, scene.int_ext, scene.location, scene.time_of_day, scene.forced) for scene in found] == [
        ("1A", "INT", "KITCHEN", "NIGHT", False),
        ("2", "", "FLASHBACK", "", True),
        ("3", "EXT", "GARDEN", "LATER THAT MORNING", False),
        ("4", "INT/EXT", "CAR", "CONTINUOUS", False),
    ]


def test_fountain_title_page_and_acts() -> None:
    sections = fountain_sections(SCRIPT)

    assert sections[0].kind == "title_page"
    assert sections[0].text.splitlines() == [
        "Title: THE TEST",
        "Credit: Written by",
        "Author: Someone",
        "Contact: PO Box 1",
        "Nowhere",
    ]
    assert sections[1].kind == "text" and sections[1].text == "Where it starts."  # the synopsis before scene 1
    found = scenes(sections)
    assert found[0].act_path == ("ACT I", "The Meeting")
    assert found[3].act_path == ("ACT II",)
    assert sections[2].heading_path == ("ACT I", "The Meeting", "INT. KITCHEN - NIGHT")


def test_fountain_cues_extensions_dual_and_forced_names() -> None:
    kitchen, _, garden, car = scenes(fountain_sections(SCRIPT))

    assert kitchen.characters == ("ANN", "BOB")
    assert [(block.character, block.words, block.dual) for block in kitchen.dialogue_blocks] == [
        ("ANN", 3, True),  # "(quietly)" is not spoken; the next cue's ^ makes this block dual too
        ("BOB", 1, True),
        ("ANN", 1, False),
    ]
    assert garden.characters == ("MCGREGOR",)
    assert car.characters == ()  # "!BOB WALKS." is forced action, not a cue
    assert car.action_lines == 1


def test_fountain_notes_boneyard_emphasis_and_centred_text() -> None:
    sections = fountain_sections(SCRIPT)
    kitchen, flashback = sections[2], sections[3]

    assert "note" not in kitchen.text and "Not here" not in kitchen.text
    assert "Hello there, friend." in kitchen.text
    assert "THE END" in flashback.text and "<" not in flashback.text
    assert flashback.scene is not None and flashback.scene.action_lines == 1


def test_fountain_page_break_starts_a_new_page() -> None:
    found = scenes(fountain_sections(SCRIPT))

    assert [scene.start_page for scene in found] == [1, 1, 2, 2]


def test_a_cue_needs_speech_after_it_and_a_transition_needs_air() -> None:
    found = scenes(fountain_sections("INT. ROOM - DAY\n\nSHOUTING\n\nTOM\nYes.\n\nSMASH CUT TO:\n\nEXT. ROAD - DAY\n"))

    assert [scene.characters for scene in found] == [("TOM",), ()]
    assert found[0].action_lines == 1  # SHOUTING, alone, is action


def test_page_estimate_counts_55_lines_a_page() -> None:
    action = "\n\n".join(f"Line {n} of action." for n in range(60))

    found = scenes(fountain_sections(f"INT. A - DAY\n\n{action}\n\nINT. B - DAY\n\nMore.\n"))

    # 1 + 1 heading lines, then 60 action lines each with a blank line before: 122 lines, page 3.
    assert found[0].lines == 122
    assert found[1].start_page == 3


def test_a_script_opening_with_a_transition_has_no_title_page() -> None:
    sections = fountain_sections("FADE IN:\n\nINT. ROOM - DAY\n\nQuiet.\n")

    assert [section.kind for section in sections] == ["text", "scene"]
    assert sections[0].text == "FADE IN:"


@pytest.mark.parametrize(
    ("cue", "name"),
    [("EDWARD (V.O.)", "EDWARD"), ("EDWARD (CONT'D)", "EDWARD"), ("edward", "EDWARD"), ("@Mc Gregor ^", "MC GREGOR")],
)
def test_cue_names_are_normalised(cue: str, name: str) -> None:
    assert normalise_cue(cue) == name


def test_scene_heading_parts() -> None:
    assert parse_scene_heading("INT./EXT. CAR -- MOVING - NIGHT") == ("INT/EXT", "CAR - MOVING", "NIGHT")
    assert parse_scene_heading("EST. CITY SKYLINE") == ("EXT", "CITY SKYLINE", "")
    assert parse_scene_heading("INT. GALLERY, SOUTH OF MARKET") == ("INT", "GALLERY, SOUTH OF MARKET", "")


FDX = b"""<?xml version="1.0" encoding="UTF-8" standalone="no" ?>
<FinalDraft DocumentType="Script" Version="5">
  <Content>
    <Paragraph Number="7" Type="Scene Heading">
      <SceneProperties Page="4"><SceneArcBeats><CharacterArcBeat Name="X">
        <Paragraph><Text>not a line of the script</Text></Paragraph>
      </CharacterArcBeat></SceneArcBeats></SceneProperties>
      <Text>INT. OFFICE - DAY</Text>
    </Paragraph>
    <Paragraph Type="Action"><Text>Rain. </Text><Text Style="Bold">Hard</Text><Text> rain.</Text></Paragraph>
    <Paragraph Type="Character"><Text>edward (V.O.)</Text></Paragraph>
    <Paragraph Type="Parenthetical"><Text>(tired)</Text></Paragraph>
    <Paragraph Type="Dialogue"><Text>Again &amp; again.</Text></Paragraph>
    <Paragraph Type="Character"><Text>EDWARD (CONT'D)</Text></Paragraph>
    <Paragraph Type="Dialogue"><Text>And again.</Text></Paragraph>
    <Paragraph Type="Transition"><Text>CUT TO:</Text></Paragraph>
  </Content>
</FinalDraft>"""


def test_fdx_paragraph_types_numbers_and_pages() -> None:
    (section,) = fdx_sections(FDX)

    assert section.scene is not None
    assert (section.scene.number, section.scene.start_page, section.page) == ("7", 4, 4)
    assert section.scene.characters == ("EDWARD",)
    assert [block.words for block in section.scene.dialogue_blocks] == [2, 2]
    assert "Rain. Hard rain." in section.text and "not a line" not in section.text


def test_fdx_dual_dialogue_marks_both_speeches() -> None:
    document = b"""<FinalDraft><Content>
      <Paragraph Type="Scene Heading"><Text>EXT. ROAD - NIGHT</Text></Paragraph>
      <Paragraph><DualDialogue>
        <Paragraph Type="Character"><Text>ANN</Text></Paragraph>
        <Paragraph Type="Dialogue"><Text>Left.</Text></Paragraph>
        <Paragraph Type="Character"><Text>BOB</Text></Paragraph>
        <Paragraph Type="Dialogue"><Text>Right side.</Text></Paragraph>
      </DualDialogue></Paragraph>
      <Paragraph Type="Character"><Text>ANN</Text></Paragraph>
      <Paragraph Type="Dialogue"><Text>Alone.</Text></Paragraph>
    </Content></FinalDraft>"""

    (section,) = fdx_sections(document)

    assert section.scene is not None
    assert [(block.character, block.words, block.dual) for block in section.scene.dialogue_blocks] == [
        ("ANN", 1, True),
        ("BOB", 2, True),
        ("ANN", 1, False),
    ]
    assert section.scene.time_of_day == "NIGHT"


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><FinalDraft><Content><Paragraph Type="Action">'
        b"<Text>&c;</Text></Paragraph></Content></FinalDraft>",
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<FinalDraft><Content><Paragraph Type="Action"><Text>&x;</Text></Paragraph></Content></FinalDraft>',
        b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://example.invalid/x.dtd"><FinalDraft/>',
    ],
    ids=["entity-expansion", "external-entity", "external-dtd"],
)
def test_fdx_with_a_dtd_is_refused(document: bytes) -> None:
    with pytest.raises(InvalidInput, match="DTD"):
        fdx_sections(document)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"<FinalDraft><Content><Paragraph>", "not well-formed"),
        (b"<Script/>", "not a Final Draft"),
        (b"<FinalDraft>&undefined;</FinalDraft>", "not well-formed"),
    ],
)
def test_broken_fdx_is_refused(document: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        fdx_sections(document)


@needs_data
def test_brick_and_steel_golden() -> None:
    # Checked by hand reading the file: 6 INT/EXT headings plus the forced .SNIPER SCOPE POV and
    # .OPENING TITLES make 8 scenes; STEEL speaks in scenes 1, 3, 4, 6, 7 (9 speeches), BRICK in
    # 1 and 7 (4 speeches, the last of scene 1 being the `BRICK ^` dual one); the file mixes CRLF and LF.
    sections = fountain_sections((SCREENPLAYS / "Brick-and-Steel.fountain").read_text())
    found = scenes(sections)

    assert len(found) == 8
    assert [scene.heading for scene in found if scene.forced] == ["SNIPER SCOPE POV", "OPENING TITLES"]
    assert sections[0].kind == "title_page" and "Author: Stu Maschwitz" in sections[0].text
    assert found[1].characters == ("JACK", "DAN")  # tab-indented cues
    steel, brick = characters_report(sections)[:2]
    assert (steel.name, steel.scenes, steel.dialogue_blocks, steel.longest_absence) == ("STEEL", 5, 9, 1)
    assert (brick.name, brick.scenes, brick.dialogue_blocks, brick.most_shared_with) == ("BRICK", 2, 4, "STEEL")
    assert found[0].dialogue_blocks[-1].dual and found[0].dialogue_blocks[-2].dual
    pacing = pacing_report(sections)
    assert (pacing.scenes, pacing.int_ext, pacing.day_night) == (
        8,
        {"EXT": 4, "INT": 2, "": 2},
        {"day": 6, "night": 0, "other": 2},
    )


@needs_data
def test_the_last_birthday_card_golden() -> None:
    # Checked by hand: `grep -nE '^(INT|EXT)'` lists 25 headings and `grep -nE '^\.[^.]'` 23 forced
    # ones (each after a blank line), so 48 scenes. Scene counts per speaker were counted with an
    # awk script independent of this parser (a cue is an all-caps line after a blank line with text
    # under it; a new scene at every heading): SCOTT 12, BAXTER 5, NAK 3; and `grep -cx` of the cue
    # lines gives 61 SCOTT, 25 BAXTER, 15 NAK speeches.
    sections = fountain_sections((SCREENPLAYS / "The-Last-Birthday-Card.fountain").read_text())
    found = scenes(sections)

    assert len(found) == 48
    assert sum(scene.forced for scene in found) == 23
    report = {row.name: row for row in characters_report(sections)}
    assert [(name, report[name].scenes, report[name].dialogue_blocks) for name in ("SCOTT", "BAXTER", "NAK")] == [
        ("SCOTT", 12, 61),
        ("BAXTER", 5, 25),
        ("NAK", 3, 15),
    ]
    assert report["BAXTER"].most_shared_with == "SCOTT"
    assert found[0].act_path == ("ACT I", "Meet Scott", "Scott's SF Apartment")
    assert (found[0].location, found[0].time_of_day) == ("SAN FRANCISCO APARTMENT", "DAY")
    assert (found[1].location, found[1].time_of_day) == ("HALLWAY, SCOTT'S APARTMENT BUILDING", "A MOMENT LATER")
    acts = pacing_report(sections).per_act
    assert [(act.act, act.scenes) for act in acts] == [
        ("ACT I", 23),
        ("ACT II: A New Day", 13),
        ("ACT III: The Showdown", 12),
    ]
    assert [scene.start_page for scene in found] == sorted(scene.start_page for scene in found)


@needs_data
def test_the_final_draft_sample_matches_its_fountain_twin() -> None:
    # The .fdx has 2 Scene Heading and 4 Character paragraphs (DJ, DAVE, JIM (O.S.), KAY), both
    # scenes on page 1 by its SceneProperties; the .fountain twin is the same scenes with #1# #2#.
    from_fdx = fdx_sections((SCREENPLAYS / "TestFDX-FD.fdx").read_bytes())
    from_fountain = fountain_sections((SCREENPLAYS / "TestFDX-FD.fountain").read_text())

    assert from_fdx[0].kind == "title_page" and "FDX Test Script" in from_fdx[0].text
    fdx_scenes, fountain_scenes = scenes(from_fdx), scenes(from_fountain)
    assert [(scene.number, scene.heading, scene.characters, scene.start_page) for scene in fdx_scenes] == [
        ("1", "INT. RADIO STUDIO", ("DJ", "DAVE", "JIM"), 1),
        ("2", "EXT. OUTSIDE THE FOOD STORE", ("KAY",), 1),
    ]
    assert [(scene.number, scene.heading, scene.characters) for scene in fountain_scenes] == [
        (scene.number, scene.heading, scene.characters) for scene in fdx_scenes
    ]
    assert [scene.dialogue_blocks for scene in fountain_scenes] == [scene.dialogue_blocks for scene in fdx_scenes]
