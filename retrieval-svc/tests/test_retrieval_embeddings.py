"""The offline embedder: deterministic, unit length, and closer for texts that share words."""

import math

from parley.retrieval.embeddings import LOCAL_DIMENSIONS, LocalEmbedder, cosine_similarity, embed_text, terms


def test_normalises_words_and_strips_plurals() -> None:
    assert terms("The Engines' roar — engine's PARTS, batteries!") == [
        "the",
        "engine",
        "roar",
        "engine",
        "part",
        "battery",
    ]
    assert terms("glass bus analysis") == ["glass", "bus", "analysis"]


async def test_vectors_are_deterministic_and_unit_length() -> None:
    embedder = LocalEmbedder()
    first, second = (await embedder.embed(["The warp engines failed.", "The warp engines failed."])).vectors
    assert first == second == embed_text("The warp engines failed.")
    assert len(first) == LOCAL_DIMENSIONS == embedder.dimensions
    assert math.isclose(math.sqrt(sum(value * value for value in first)), 1.0)


async def test_similar_texts_score_closer_than_unrelated_ones() -> None:
    query, similar, unrelated = (
        await LocalEmbedder().embed(
            [
                "how do the ship's engines work",
                "The engine of the ship works by burning fuel in a chamber.",
                "She baked bread with flour, yeast and a pinch of salt.",
            ]
        )
    ).vectors
    assert cosine_similarity(query, similar) > cosine_similarity(query, unrelated) + 0.2


async def test_word_order_counts_through_bigrams() -> None:
    text = "dog bites man"
    assert embed_text(text) != embed_text("man bites dog")
    assert cosine_similarity(embed_text(text), embed_text("man bites dog")) > 0.5


async def test_text_without_words_is_the_zero_vector() -> None:
    assert embed_text("  ... !!! ") == [0.0] * LOCAL_DIMENSIONS


async def test_large_batches_embed_the_same_as_small_ones() -> None:
    texts = [f"chapter {number} of the manual" for number in range(100)]
    assert (await LocalEmbedder().embed(texts)).vectors == [embed_text(text) for text in texts]
