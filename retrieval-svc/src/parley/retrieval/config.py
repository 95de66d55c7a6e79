"""The retrieval service's settings, read once from `PARLEY_*` environment variables."""

from typing import Literal

from pydantic import Field

from parley.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    # "minilm": all-MiniLM-L6-v2 on the CPU (minilm.py), semantic, ~60 ms a chunk on one core.
    # "local": the hashing embedder, lexical and instant (tests, tiny machines). After a switch the
    # stored vectors of the other are re-made in the background (Indexer.reembed_until_current).
    embedding_provider: Literal["minilm", "local"] = "minilm"
    bm25_k1: float = Field(default=1.2, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    # None: exact BM25. A cap trades quality for speed on large collections (see bm25.py).
    bm25_max_postings_per_term: int | None = Field(default=None, gt=0)
    # The keyword list's weight in hybrid fusion (the vector list gets the rest). 0.5 measured best
    # on Cranfield (BENCHMARKS.md, "Retrieval").
    hybrid_keyword_weight: float = Field(default=0.5, ge=0, le=1)
