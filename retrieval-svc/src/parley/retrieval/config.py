"""The retrieval service's settings, read once from `PARLEY_*` environment variables."""

from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from parley.kit.settings import ServiceSettings
from parley.retrieval.bm25 import BM25_DEFAULTS


class Settings(ServiceSettings):
    # "minilm": all-MiniLM-L6-v2 on the CPU (minilm.py), semantic, ~60 ms a chunk on one core.
    # "openai": OpenAI's embeddings API (`embedding_model`, `embedding_dimensions`; needs the key).
    # "local": the hashing embedder, lexical and instant (tests, tiny machines).
    # After a switch, search keeps answering from the previous model's vectors while the new
    # model's are made in the background (vectors.py).
    embedding_provider: Literal["minilm", "local", "openai"] = "minilm"
    # OpenAI only: the model, and the width asked of it (`dimensions`; text-embedding-3 models
    # shorten their vectors on request, 1536 being small's full width).
    embedding_model: str = "text-embedding-3-small"
    embedding_dimensions: int = Field(default=512, gt=0, le=2000)  # HNSW indexes at most 2,000
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    embedding_timeout_seconds: float = Field(default=30.0, gt=0)
    # Retries of a 408/409/429/5xx or a lost connection, with the SDK's backoff (honouring retry-after).
    embedding_retries: int = Field(default=4, ge=0)
    # Documents indexed at once: while one is embedded (a CPU, in a worker thread) another's
    # chunks, vectors and postings are written (BENCHMARKS.md, "Ingestion").
    indexing_concurrency: int = Field(default=2, ge=1, le=16)
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
    # Postings held in memory for exact BM25 at once (keyword_index.py), over all collections:
    # 8 bytes each (20M: ~160 MB); the least recently searched collections make room; 0: none,
    # every keyword search reads PostgreSQL.
    bm25_memory_postings: int = Field(default=20_000_000, ge=0)
    # A collection of at most this many chunks is loaded on its first search, which waits; a
    # larger one in the background (its searches read PostgreSQL meanwhile), or at start.
    bm25_memory_inline_chunks: int = Field(default=1_000, ge=0)
    # HNSW's candidate list at least (hnsw.ef_search): hybrid_search.DEFAULT_EF_SEARCH, measured for
    # recall@10 >= 0.95 (not imported: hybrid_search depends on the embedder, which reads Settings).
    hnsw_ef_search: int = Field(default=100, ge=1, le=1000)
    # The keyword list's weight in hybrid fusion (the vector list gets the rest). 0.5 measured best
    # on Cranfield (BENCHMARKS.md, "Retrieval").
    hybrid_keyword_weight: float = Field(default=0.5, ge=0, le=1)

    @field_validator("openai_base_url", mode="before")
    @classmethod
    def _unset_if_empty(cls, value: object) -> object:
        # A ConfigMap entry left empty means OpenAI's own URL.
        return None if value == "" else value

    @model_validator(mode="after")
    def _openai_needs_a_key(self) -> Self:
        if self.embedding_provider == "openai" and self.openai_api_key is None:
            raise ValueError("PARLEY_EMBEDDING_PROVIDER=openai needs PARLEY_OPENAI_API_KEY")
        return self
