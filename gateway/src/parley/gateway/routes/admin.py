"""Operators' routes (admins and owners with an `admin` key): the tenant's ingest jobs that kept
failing, and replaying one."""

from typing import Annotated

from fastapi import APIRouter, Path

from parley.gateway.api.deps import Ingestion, Operator
from parley.gateway.schemas import Page
from parley.gateway.schemas.admin import DeadLetter

# A JetStream sequence number: an unsigned 64-bit int, of which the proto's int64 holds the half.
Seq = Annotated[int, Path(ge=1, le=2**63 - 1, description="the dead letter's sequence number")]

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/dead-letters")
async def list_dead_letters(who: Operator, ingestion: Ingestion) -> Page[DeadLetter]:
    """Ingest jobs that failed on every try and were set aside, oldest first; each one's document
    is `failed` with the stage and the reason meanwhile."""
    found = await ingestion.list_dead_letters(who)
    return Page(data=[DeadLetter.of(letter) for letter in found.dead_letters], next_page_token=None)


@router.post("/dead-letters/{seq}/replay")
async def replay_dead_letter(
    seq: Seq,
    who: Operator,
    ingestion: Ingestion,
) -> DeadLetter:
    """Put the job back on its queue: its document goes back to `queued` and is worked on again.
    404 for a job that is not parked (already replayed); 409 when the document has a newer version."""
    return DeadLetter.of(await ingestion.replay_dead_letter(who, seq))
