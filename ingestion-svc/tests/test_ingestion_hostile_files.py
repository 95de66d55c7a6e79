"""Hostile files cost little: each is made here, small, and refused with a clear reason (a 400 at
the gateway) within the CPU its size warrants, never a crash."""

import io
import zlib

import pytest

from parley.ingestion.formats import Parser, parse_document
from parley.ingestion.parse_budget import BASE_CPU_SECONDS
from parley.kit.contracts import FINAL_DRAFT, PDF
from parley.kit.errors import InvalidInput


def pdf_of_pages(contents: list[bytes]) -> bytes:
    """A minimal PDF whose pages draw `contents` (each deflated, as real PDFs store them)."""
    pages = len(contents)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % (4 + 2 * n) for n in range(pages)), pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for number, content in enumerate(contents):
        stream = zlib.compress(content, 9)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % (5 + 2 * number)
        )
        objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def text_operators(count: int) -> bytes:
    return b"BT /F1 12 Tf 72 720 Td " + b"(a) Tj " * count + b"ET"


def test_a_small_pdf_with_a_million_text_operators_is_refused_before_they_are_parsed() -> None:
    hostile = pdf_of_pages([text_operators(1_000_000)])
    assert len(hostile) < 30_000

    with pytest.raises(InvalidInput, match=r"page 1 of the PDF holds 6\.7 MiB of drawing instructions"):
        parse_document(hostile, filename="innocent.pdf", declared=PDF)


def test_a_pdf_that_costs_more_cpu_than_its_size_warrants_is_refused() -> None:
    # Twenty pages just under the per-page limit: each takes about a second to read, and the whole
    # file is ~20 KB, so its budget is about two seconds.
    hostile = pdf_of_pages([text_operators(280_000)] * 20)
    assert len(hostile) < 100_000

    with pytest.raises(InvalidInput, match=rf"takes more than {BASE_CPU_SECONDS:.0f}\.\d s of CPU to read"):
        parse_document(hostile, filename="pages.pdf", declared=PDF)


def test_an_honest_pdf_is_read_within_its_budget() -> None:
    page = b"BT /F1 12 Tf 72 720 Td (The relief valve opens at 1.8 bar.) Tj ET"
    parsed = parse_document(pdf_of_pages([page, page]), filename="manual.pdf", declared=PDF)
    assert [section.page for section in parsed.sections] == [1, 2]
    assert "1.8 bar" in parsed.sections[0].text


def nested_dual_dialogue(depth: int) -> bytes:
    speech = (
        b'<Paragraph Type="Character"><Text>ROSA</Text></Paragraph>'
        b'<Paragraph Type="Dialogue"><Text>No.</Text></Paragraph>'
    )
    opened = b"<Paragraph><DualDialogue>" * depth
    closed = b"</DualDialogue></Paragraph>" * depth
    return (
        b'<?xml version="1.0"?><FinalDraft DocumentType="Script"><Content>'
        b'<Paragraph Type="Scene Heading"><Text>INT. KITCHEN - DAY</Text></Paragraph>'
        + opened
        + speech
        + closed
        + b"</Content></FinalDraft>"
    )


@pytest.mark.parametrize("depth", [2, 50_000])
def test_final_draft_with_nested_dual_dialogue_is_refused_not_a_crash(depth: int) -> None:
    with pytest.raises(InvalidInput, match="nests a DualDialogue inside a DualDialogue"):
        parse_document(nested_dual_dialogue(depth), filename="script.fdx", declared=FINAL_DRAFT)


def test_one_level_of_dual_dialogue_is_a_script() -> None:
    parsed = parse_document(nested_dual_dialogue(1), filename="script.fdx", declared=FINAL_DRAFT)
    assert parsed.sections and "ROSA" in parsed.sections[-1].text


async def test_the_service_parser_refuses_off_the_event_loop() -> None:
    with pytest.raises(InvalidInput, match="drawing instructions"):
        await Parser().parse(pdf_of_pages([text_operators(1_000_000)]), filename="x.pdf", declared=PDF)
