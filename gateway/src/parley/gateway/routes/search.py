"""Search over the caller's collections: the passages themselves, without an answer."""

import asyncio

from fastapi import APIRouter

from parley.gateway.api.deps import Deps, Ingestion, Reader, Retrieval
from parley.gateway.errors import responses
from parley.gateway.schemas.search import SearchIn, SearchOut

router = APIRouter(prefix="/v1/search", tags=["search"])


@router.post("", responses=responses(402))
async def search(body: SearchIn, who: Reader, services: Deps, ingestion: Ingestion, retrieval: Retrieval) -> SearchOut:
    """The best `k` chunks for the query, best first, each with a marked snippet.

    Every collection must be the caller's: one that is not (another tenant's, deleted, never
    made) is a 404, as it is everywhere else, rather than a search that quietly finds nothing.
    """
    # The query is embedded (billed, without a hold): budgets before any backend is called.
    await services.budgets.before_spending(services, who, embeds_query=True)
    # Ingestion owns collections; retrieval only ever returns the caller's tenant's chunks, but
    # it cannot tell "not yours" from "empty".
    await asyncio.gather(*(ingestion.get_collection(who, collection_id) for collection_id in body.collection_ids))
    return SearchOut.of(await retrieval.search(who, body.proto()))
