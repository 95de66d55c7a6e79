"""Keyword ranking by BM25, from term statistics kept in PostgreSQL.

Why not `ts_rank`: it has no IDF and no length normalisation tuned like BM25's, and
`websearch_to_tsquery` requires every word; on Cranfield that lexical leg scored far below BM25
and dragged hybrid search under vector search alone. Why not a library index in memory: the
index must follow every upsert and delete across replicas, in the same transaction as the chunks.

The analyzer is PostgreSQL's own `english` text search configuration (`to_tsvector`): lowercase,
the English stop words, Snowball English stemming. Chunks and queries go through the same one,
so the two can never drift apart, and a chunk is analysed where it is stored.

Tables (models.py; the SQL is in store.py):
- `bm25_collections`: one row per (tenant, collection): a compact key for the others, the number
  of chunks with at least one term and the total of their lengths (for N and avgdl).
- `bm25_terms`: per collection and term, the number of chunks containing it (df).
- `bm25_postings`: per collection, term and chunk, the term's frequency in the chunk, the chunk's
  length (its number of terms after stop words) and the posting's impact: its BM25 term weight
  with the avgdl of the time it was written. Postings are read by an index-only scan in impact
  order, so a search reads at most `max_postings_per_term` of a common term (the ones that can
  matter most) instead of all of them; the score itself is computed exactly, from tf, length and
  the current N, df and avgdl. Rare terms (df below the cap) are always read in full.

Indexing of one collection is serialised on its `bm25_collections` row (locked first by every
write), which keeps the counters exact and rules out deadlocks between concurrent documents.

A search over several collections of a tenant treats them as one corpus: N, avgdl and each
term's df are summed over the chosen collections, so scores are comparable across them.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bm25Parameters:
    """BM25's constants, and how much of a common term a search reads (settings bm25_*)."""

    k1: float = 1.2
    b: float = 0.75
    # How many postings of one term a search reads at most, best impact first. None reads them all:
    # exact BM25, but 196 ms p50 at 100k chunks; 1,000 gives 13 ms p50 there, yet at the same share
    # of a term's postings on Cranfield (14 of 1,400) nDCG@10 fell from 0.377 to 0.282 (200: 0.374).
    max_postings_per_term: int | None = None


BM25_DEFAULTS = Bm25Parameters()
