"""A PDF of a screenplay is read as a script: scenes, numbers, cues, pages. Fixtures are PDFs made
here in Courier 12 pt at the industry's indents (action 1.5" from the left edge, dialogue 2.5",
parentheticals 3.1", cues 3.7", transitions 6"), 55 lines a page; one is the real Fountain script
in ../shared/data laid out as a screenwriting program prints it, which must read back the same."""

import asyncio
import itertools
import uuid
from pathlib import Path

import grpc
import pytest
from nats.aio.client import Client as NatsClient

from parley.ingestion.formats import parse_document
from parley.ingestion.pdf_text import pdf_sections
from parley.ingestion.screenplay import fountain_sections
from parley.ingestion.screenplay_reports import characters_report
from parley.ingestion.sections import Scene, Section, chunk_sections
from parley.kit.contracts import CHUNKS_INDEXED, CHUNKS_UPSERTED
from parley.kit.identity import Identity
from parley.kit.testing import signed
from parley.v1 import events_pb2, ingestion_pb2, ingestion_pb2_grpc

SCREENPLAYS = Path(__file__).parents[2] / ".." / "shared" / "data" / "screenplays"
needs_data = pytest.mark.skipif(not SCREENPLAYS.is_dir(), reason=f"the shared test data is not at {SCREENPLAYS}")

ACTION, DIALOGUE, PARENTHETICAL, CUE, TRANSITION, PAGE_NUMBER = 108.0, 180.0, 223.0, 266.0, 432.0, 504.0
TOP, LINE = 720.0, 12.0

Placed = tuple[float, str]  # (x, text) on the next line down; (0, "") is a blank line


def build_pdf(pages: list[list[tuple[float, float, str]]]) -> bytes:
    """A letter-size PDF in Courier 12 pt: each page a list of (x, y, text), points from bottom left."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>")
    pages_id = len(objects) + 1 + 2 * len(pages)
    kids = []
    for lines in pages:
        shown = []
        for x, y, text in lines:
            escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            shown.append(f"BT /F1 12 Tf {x:.1f} {y:.1f} Td ({escaped}) Tj ET")
        stream = "\n".join(shown).encode("latin-1", errors="replace")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 %d 0 R >> >> "
                b"/Contents %d 0 R >>" % (pages_id, font, content)
            )
        )
    kid_refs = b" ".join(b"%d 0 R" % kid for kid in kids)
    assert add(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kid_refs, len(kids))) == pages_id
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref)
    return bytes(out)


def paginate(lines: list[Placed], *, title_page: list[str] | None = None) -> bytes:
    """Lines laid out 55 to a page, each page after the first numbered top right as scripts are."""
    pages: list[list[tuple[float, float, str]]] = []
    if title_page:
        pages.append([(ACTION + 100, 500 - LINE * index, text) for index, text in enumerate(title_page)])
    for number, start in enumerate(range(0, len(lines), 55), 1):
        page = [(x, TOP - LINE * index, text) for index, (x, text) in enumerate(lines[start : start + 55]) if text]
        if number > 1:
            page.append((PAGE_NUMBER, 756.0, f"{number}."))
        pages.append(page)
    return build_pdf(pages)


def scenes(sections: list[Section]) -> list[Scene]:
    return [section.scene for section in sections if section.scene is not None]


def short_script() -> bytes:
    page_one: list[tuple[float, float, str]] = [
        (72.0, 700.0, "1"),
        (ACTION, 700.0, "INT. KITCHEN - NIGHT"),
        (540.0, 700.0, "1"),
        (ACTION, 676.0, "Mary stirs a pot. The clock reads midnight, and she has"),
        (ACTION, 664.0, "been waiting for hours."),
        (CUE, 640.0, "MARY"),
        (PARENTHETICAL, 628.0, "(quietly)"),
        (DIALOGUE, 616.0, "Where were you?"),
        (CUE, 592.0, "JOHN (O.S.)"),
        (DIALOGUE, 580.0, "Out."),
        (TRANSITION, 556.0, "CUT TO:"),
        (72.0, 532.0, "2"),
        (ACTION, 532.0, "EXT. GARDEN - DAY"),
        (540.0, 532.0, "2"),
        (ACTION, 508.0, "John digs a hole by the fence, slowly, as if it mattered."),
        (CUE, 484.0, "JOHN"),
        (DIALOGUE, 472.0, "Nobody will look"),
        (CUE, 448.0, "(MORE)"),
        (ACTION, 60.0, "(CONTINUED)"),
    ]
    page_two: list[tuple[float, float, str]] = [
        (PAGE_NUMBER, 756.0, "2."),
        (ACTION, 730.0, "CONTINUED:"),
        (CUE, 700.0, "JOHN (CONT'D)"),
        (DIALOGUE, 688.0, "here."),
        (72.0, 664.0, "3"),
        (ACTION, 664.0, "INT. CAR - CONTINUOUS"),
        (540.0, 664.0, "3"),
        (CUE, 640.0, "MARY"),
        (DIALOGUE, 628.0, "We're late."),
        (CUE, 604.0, "JOHN"),
        (DIALOGUE, 592.0, "We were always late."),
    ]
    title = [(300.0, 500.0, "THE LATE ONES"), (300.0, 476.0, "Written by"), (300.0, 464.0, "A. Writer")]
    return build_pdf([title, page_one, page_two])


def test_a_screenplay_pdf_reads_as_scenes_with_numbers_cues_and_pages() -> None:
    parsed = parse_document(short_script(), filename="late.pdf")

    assert parsed.format == "application/pdf"
    assert parsed.sections[0].kind == "title_page" and "THE LATE ONES" in parsed.sections[0].text
    found = scenes(parsed.sections)
    assert [(scene.number, scene.heading) for scene in found] == [
        ("1", "INT. KITCHEN - NIGHT"),
        ("2", "EXT. GARDEN - DAY"),
        ("3", "INT. CAR - CONTINUOUS"),
    ]
    assert [scene.characters for scene in found] == [("MARY", "JOHN"), ("JOHN",), ("MARY", "JOHN")]
    # The title page is not page 1; scene 2's speech runs over the page break, scene 3 starts on 2.
    assert [(scene.start_page, scene.end_page) for scene in found] == [(1, 1), (1, 2), (2, 2)]
    # Page furniture is not text: no (MORE), (CONTINUED), CONTINUED: or page numbers in the scenes.
    garden = next(section for section in parsed.sections if section.heading == "EXT. GARDEN - DAY")
    assert "MORE" not in garden.text and "CONTINUED" not in garden.text and "2." not in garden.text
    assert [block.words for block in found[1].dialogue_blocks] == [3, 1]
    assert "CUT TO:" in parsed.sections[1].text
    pieces = chunk_sections(parsed.sections, max_tokens=300)
    assert [(piece.scene_number, piece.page_start, piece.page_end) for piece in pieces if piece.scene_number] == [
        ("1", 1, 1),
        ("2", 1, 2),
        ("3", 2, 2),
    ]


def test_a_pdf_with_a_few_scene_words_is_still_read_as_pages() -> None:
    report = [(ACTION, "INT. and EXT. are the two kinds of scene heading a script uses in its text.")]
    report += [
        (ACTION, f"Paragraph {index} of a document about screenwriting, not a script itself.") for index in range(8)
    ]
    sections = pdf_sections(paginate(report))

    assert [section.kind for section in sections] == ["page"]
    assert sections[0].scene is None


def fountain_as_printed(sections: list[Section]) -> list[Placed]:
    """A parsed Fountain script laid out as a screenwriting program prints it."""
    lines: list[Placed] = []
    for section in sections:
        if section.scene is None:
            continue
        speakers = set(section.scene.characters)
        for paragraph in section.text.split("\n\n"):
            rows = paragraph.split("\n")
            first = rows[0].strip()
            if paragraph == section.text.split("\n\n")[0]:
                lines += [(ACTION, f"{section.scene.number}  {first}"), (0.0, "")]
                continue
            cue = first.split("(")[0].strip().upper()
            if cue in speakers and len(rows) > 1:
                lines.append((CUE, first))
                for row in rows[1:]:
                    x = PARENTHETICAL if row.startswith("(") else DIALOGUE
                    lines += [(x, wrapped) for wrapped in _wrap(row, 35)]
            elif first.isupper() and first.endswith("TO:"):
                lines.append((TRANSITION, first))
            else:
                lines += [(ACTION, wrapped) for row in rows for wrapped in _wrap(row, 61)]
            lines.append((0.0, ""))
    return lines


def _wrap(text: str, width: int) -> list[str]:
    words, rows, row = text.split(), [], ""
    for word in words:
        if row and len(row) + 1 + len(word) > width:
            rows.append(row)
            row = word
        else:
            row = f"{row} {word}".strip()
    return [*rows, row] if row else rows


@needs_data
@pytest.mark.parametrize("name", ["Brick-and-Steel.fountain", "The-Last-Birthday-Card.fountain"])
def test_a_real_script_printed_to_pdf_reads_back_the_same(name: str) -> None:
    # The scenes of these scripts and who speaks in each were checked by hand against the Fountain
    # files (test_ingestion_screenplay.py); printed to PDF, the same must come back.
    fountain = fountain_sections((SCREENPLAYS / name).read_text())
    printed = paginate(fountain_as_printed(fountain))

    from_pdf = pdf_sections(printed)

    assert [(s.number, s.heading, s.characters) for s in scenes(from_pdf)] == [
        (s.number, s.heading, s.characters) for s in scenes(fountain)
    ]
    by_pdf = {report.name: report.scenes for report in characters_report(from_pdf)}
    by_fountain = {report.name: report.scenes for report in characters_report(fountain)}
    assert by_pdf == by_fountain
    assert all(a <= b for a, b in itertools.pairwise(s.start_page for s in scenes(from_pdf)))


async def test_an_uploaded_script_pdf_gives_scene_chunks_and_a_characters_report(
    ingestion: ingestion_pb2_grpc.IngestionServiceStub, nats_client: NatsClient, tenant_id: str
) -> None:
    who = signed(Identity(tenant_id=tenant_id, user_id="writer", request_id=str(uuid.uuid4())))
    collection = await ingestion.CreateCollection(ingestion_pb2.CreateCollectionRequest(name="Scripts"), metadata=who)
    header = ingestion_pb2.DocumentHeader(collection_id=collection.id, filename="late.pdf")
    document = await ingestion.IngestDocument(
        iter(
            [
                ingestion_pb2.IngestDocumentRequest(header=header),
                ingestion_pb2.IngestDocumentRequest(content=short_script()),
            ]
        ),
        metadata=who,
    )
    assert (document.content_type, document.title) == ("application/pdf", "THE LATE ONES")

    subscription = await nats_client.jetstream().pull_subscribe(CHUNKS_UPSERTED, stream="DOCS")
    upserted: events_pb2.ChunksUpserted | None = None
    for _ in range(100):
        try:
            messages = await subscription.fetch(50, timeout=0.2)
        except TimeoutError:  # nats-py raises its own or a bare one when nothing came
            continue
        events = [events_pb2.ChunksUpserted.FromString(message.data) for message in messages]
        upserted = next((event for event in events if event.document_id == document.id), None)
        if upserted is not None:
            break
    await subscription.unsubscribe()
    assert upserted is not None, "no chunk set was published"
    # What retrieval's scene and page filters match on travels with every chunk.
    assert [(c.scene_number, list(c.characters), c.page_start, c.page_end) for c in upserted.chunks[1:]] == [
        ("1", ["MARY", "JOHN"], 1, 1),
        ("2", ["JOHN"], 1, 2),
        ("3", ["MARY", "JOHN"], 2, 2),
    ]

    report = await ingestion.GetCharacters(ingestion_pb2.GetCharactersRequest(document_id=document.id), metadata=who)
    assert [(character.name, character.scenes) for character in report.characters] == [("JOHN", 3), ("MARY", 2)]

    # Searchable (as retrieval would say), a 3-scene script has grown to `partial`, as a Fountain one would.
    await nats_client.jetstream().publish(
        CHUNKS_INDEXED,
        events_pb2.ChunksIndexed(tenant_id=tenant_id, document_id=document.id, version=1).SerializeToString(),
        headers={"Nats-Msg-Id": f"indexed:{document.id}:1"},
    )
    for _ in range(100):
        found = await ingestion.GetDocument(ingestion_pb2.GetDocumentRequest(document_id=document.id), metadata=who)
        if found.analysis_state:
            break
        await asyncio.sleep(0.05)
    assert found.analysis_state == "partial"


async def test_reports_refuse_a_pdf_that_is_not_a_script(
    ingestion: ingestion_pb2_grpc.IngestionServiceStub, tenant_id: str
) -> None:
    who = signed(Identity(tenant_id=tenant_id, user_id="writer", request_id=str(uuid.uuid4())))
    collection = await ingestion.CreateCollection(ingestion_pb2.CreateCollectionRequest(name="Papers"), metadata=who)
    pages = paginate(
        [(ACTION, f"Paragraph {index} of a plain report, long enough to be body text.") for index in range(5)]
    )
    header = ingestion_pb2.DocumentHeader(collection_id=collection.id, filename="report.pdf")
    document = await ingestion.IngestDocument(
        iter([ingestion_pb2.IngestDocumentRequest(header=header), ingestion_pb2.IngestDocumentRequest(content=pages)]),
        metadata=who,
    )
    for _ in range(100):
        try:
            await ingestion.GetPacing(ingestion_pb2.GetPacingRequest(document_id=document.id), metadata=who)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            if "does not read as a screenplay" in (error.details() or ""):
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the report was not refused as not a screenplay")
