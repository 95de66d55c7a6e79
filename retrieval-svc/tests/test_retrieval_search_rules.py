"""Search rules that need no database: request validation and reciprocal rank fusion."""

from typing import cast

import pytest

from parley.kit.contracts import (
    CHUNKS_DELETED,
    CHUNKS_INDEXED,
    CHUNKS_UPSERTED,
    MAX_QUERY_CHARS,
    MAX_SEARCH_K,
    USAGE_RECORDED,
)
from parley.kit.errors import InvalidInput
from parley.kit.outbox import OutboxRelay
from parley.retrieval import events
from parley.retrieval.hybrid_search import DEFAULT_K, Mode, fuse, search_query
from parley.retrieval.indexing import Indexer
from parley.retrieval.store import ChunkFilters, StoredChunk


def chunk(chunk_id: str) -> StoredChunk:
    return StoredChunk(
        chunk_id=chunk_id,
        document_id="d",
        collection_id="c",
        document_title="t",
        ordinal=0,
        heading="",
        text=chunk_id,
        token_count=1,
    )


def test_k_zero_means_the_default_and_blank_ids_are_dropped() -> None:
    query = search_query(text="engines", collection_ids=["c1", "", "c1"], k=0, mode=Mode.HYBRID)
    assert query.k == DEFAULT_K
    assert query.collection_ids == ("c1",)


@pytest.mark.parametrize(
    ("text", "collections", "k"),
    [
        ("", ["c"], 5),
        ("   ", ["c"], 5),
        ("x" * 2_001, ["c"], 5),
        ("engines", [], 5),
        ("engines", [""], 5),
        ("engines", ["c"], 51),
        ("engines", ["c"], -1),
        ("engines", [f"c{number}" for number in range(21)], 5),
    ],
)
def test_invalid_queries_are_refused(text: str, collections: list[str], k: int) -> None:
    with pytest.raises(InvalidInput):
        search_query(text=text, collection_ids=collections, k=k, mode=Mode.KEYWORD)


def test_the_limits_are_the_contracts() -> None:
    """The gateway checks the same numbers early; retrieval takes them from kit.contracts, not a copy."""
    assert search_query(text="x" * MAX_QUERY_CHARS, collection_ids=["c"], k=MAX_SEARCH_K, mode=Mode.VECTOR).k == 50
    with pytest.raises(InvalidInput, match=str(MAX_QUERY_CHARS)):
        search_query(text="x" * (MAX_QUERY_CHARS + 1), collection_ids=["c"], k=1, mode=Mode.VECTOR)
    with pytest.raises(InvalidInput, match=str(MAX_SEARCH_K)):
        search_query(text="x", collection_ids=["c"], k=MAX_SEARCH_K + 1, mode=Mode.VECTOR)


def test_filters_are_normalised_as_ingestion_writes_them() -> None:
    filters = ChunkFilters(scene_numbers=[" 12A", "12A", ""], characters=["edward ", "Edward", "ANNA"], heading=" Int ")
    query = search_query(text="x", collection_ids=["c"], k=1, mode=Mode.KEYWORD, filters=filters)
    assert query.filters == ChunkFilters(scene_numbers=("12A",), characters=("EDWARD", "ANNA"), heading="Int")


@pytest.mark.parametrize(
    "filters",
    [
        ChunkFilters(page_from=5, page_to=4),
        ChunkFilters(page_from=-1),
        ChunkFilters(page_to=-2),
        ChunkFilters(characters=[f"C{number}" for number in range(101)]),
        ChunkFilters(heading="x" * 301),
    ],
)
def test_invalid_filters_are_refused(filters: ChunkFilters) -> None:
    with pytest.raises(InvalidInput):
        search_query(text="x", collection_ids=["c"], k=1, mode=Mode.KEYWORD, filters=filters)


def test_the_consumers_are_of_the_subjects_events_declares() -> None:
    consumers = events.consumers(indexer=cast(Indexer, None), relay=cast(OutboxRelay, None))
    assert [consumer.subject for consumer in consumers] == [CHUNKS_UPSERTED, CHUNKS_DELETED]
    assert events.CONSUMES == (CHUNKS_UPSERTED, CHUNKS_DELETED)
    assert events.PUBLISHES == (CHUNKS_INDEXED, USAGE_RECORDED)


def test_fusion_favours_chunks_both_lists_rank() -> None:
    keyword = [chunk("a"), chunk("b"), chunk("c")]
    vector = [chunk("d"), chunk("c"), chunk("a")]
    fused = fuse(keyword, vector, keyword_weight=0.5, limit=3)
    assert [hit.chunk_id for hit in fused] == ["a", "c", "d"]
    assert fused[0].score == pytest.approx(0.5 / 61 + 0.5 / 63)


def test_fusion_weighs_the_keyword_list_as_configured() -> None:
    keyword, vector = [chunk("k")], [chunk("v")]
    assert [hit.chunk_id for hit in fuse(keyword, vector, keyword_weight=0.7, limit=2)] == ["k", "v"]
    assert [hit.chunk_id for hit in fuse(keyword, vector, keyword_weight=0.3, limit=2)] == ["v", "k"]


def test_fusion_of_one_list_keeps_its_order() -> None:
    fused = fuse([chunk("x"), chunk("y")], [], keyword_weight=0.5, limit=5)
    assert [hit.chunk_id for hit in fused] == ["x", "y"]
