"""Search rules that need no database: request validation and reciprocal rank fusion."""

import pytest

from parley.kit.errors import InvalidInput
from parley.retrieval.hybrid_search import DEFAULT_K, Mode, fuse, search_query
from parley.retrieval.store import StoredChunk


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
    ],
)
def test_invalid_queries_are_refused(text: str, collections: list[str], k: int) -> None:
    with pytest.raises(InvalidInput):
        search_query(text=text, collection_ids=collections, k=k, mode=Mode.KEYWORD)


def test_a_query_of_exactly_the_limit_is_accepted() -> None:
    assert search_query(text="x" * 2_000, collection_ids=["c"], k=50, mode=Mode.VECTOR).k == 50


def test_fusion_favours_chunks_both_lists_rank() -> None:
    keyword = [chunk("a"), chunk("b"), chunk("c")]
    vector = [chunk("d"), chunk("c"), chunk("a")]
    fused = fuse([keyword, vector], limit=3)
    assert [hit.chunk_id for hit in fused] == ["a", "c", "d"]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 63)


def test_fusion_of_one_list_keeps_its_order() -> None:
    assert [hit.chunk_id for hit in fuse([[chunk("x"), chunk("y")], []], limit=5)] == ["x", "y"]
