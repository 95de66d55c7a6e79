"""The retrieval service's settings, read once from `PARLEY_*` environment variables."""

from typing import Literal

from pydantic import Field

from parley.kit.settings import ServiceSettings
from parley.retrieval.bm25 import BM25_DEFAULTS


class Settings(ServiceSettings):
    # "minilm": all-MiniLM-L6-v2 on the CPU (minilm.py), semantic, ~60 ms a chunk on one core.
    # "local": the hashing embedder, lexical and instant (tests, tiny machines). After a switch the
    # stored vectors of the other are re-made in the background (Indexer.reembed_until_current).
    embedding_provider: Literal["minilm", "local"] = "minilm"
    bm25_k1: float = Field(default=1.2, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    # Candidates a keyword search rescores exactly (bm25.py): each query term's best postings, at
    # least this many and `bm25_candidates_per_result` per result; None reads every posting.
    bm25_candidates_per_term: int | None = Field(default=BM25_DEFAULTS.candidates_per_term, gt=0)
    bm25_candidates_per_result: int = Field(default=BM25_DEFAULTS.candidates_per_result, gt=0)
    # Candidates rescored exactly per result asked for (the most promising).
    bm25_rescored_per_result: int = Field(default=BM25_DEFAULTS.rescored_per_result, gt=0)
    # Reads of ever deeper candidates while one left unscored could still win (1: never again).
    bm25_rounds: int = Field(default=BM25_DEFAULTS.rounds, ge=1, le=5)
    # HNSW's candidate list at least (hnsw.ef_search): hybrid_search.DEFAULT_EF_SEARCH, measured for
    # recall@10 >= 0.95 (not imported: hybrid_search depends on the embedder, which reads Settings).
    hnsw_ef_search: int = Field(default=100, ge=1, le=1000)
    # The keyword list's weight in hybrid fusion (the vector list gets the rest). 0.5 measured best
    # on Cranfield (BENCHMARKS.md, "Retrieval").
    hybrid_keyword_weight: float = Field(default=0.5, ge=0, le=1)
