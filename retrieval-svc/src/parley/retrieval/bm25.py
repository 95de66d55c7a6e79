"""Keyword ranking by BM25, from term statistics kept in PostgreSQL.

Why not `ts_rank`: it has no IDF and no length normalisation tuned like BM25's, and
`websearch_to_tsquery` requires every word; on Cranfield that lexical leg scored far below BM25
and dragged hybrid search under vector search alone. Why PostgreSQL and not only a library index
in memory: the postings must follow every upsert and delete across replicas, in the same
transaction as the chunks. Searches read them from a copy in memory (keyword_index.py, exact BM25,
kept current through the collection's `generation`) when one is ready; the statement below is the
leg for the rest (a collection still loading, larger than the memory budget, or a filter on
chunk columns).

The analyzer is PostgreSQL's own `english` text search configuration (`to_tsvector`): lowercase,
the English stop words, Snowball English stemming. Chunks and queries go through the same one,
so the two can never drift apart, and a chunk is analysed where it is stored.

Tables (models.py; the SQL is in store.py):
- `bm25_collections`: one row per (tenant, collection): a compact key for the others, the number
  of chunks with at least one term and the total of their lengths (for N and avgdl), and its
  generation (bumped by every write; `bm25_document_changes` holds each document's last).
- `bm25_terms`: per collection and term, the number of chunks containing it (df).
- `bm25_postings`: per collection, term and chunk, the term's frequency in the chunk, the chunk's
  length (its number of terms after stop words) and the posting's impact: its BM25 term weight
  with the avgdl of the time it was written. Two indexes: by (term, impact desc), read
  index-only to find a term's best postings; by (term, chunk), to look up given chunks' postings.

A search in PostgreSQL scores exactly, but not every chunk: candidate generation, then exact
rescoring, in one statement (store.keyword_search):
1. candidates: the union, over the query's terms, of each term's `candidates_per_term(limit)`
   best postings by impact (a rare term's postings are all read; a common one is cut short);
2. each candidate's partial score, from the postings read (a lower bound of its exact score), and
   upper bound (plus, per term cut short where it was not read, idf times the last impact read);
   candidates whose upper bound is below the limit-th best partial score cannot win (WAND's test);
3. of the others, the `rescored(limit)` best by partial score get their exact BM25 over ALL the
   query's terms (their postings of the terms cut short looked up by (term, chunk)), from tf,
   length and the current N, df and avgdl; the best `limit` win;
4. a bound on what a chunk left unscored can score (a candidate left out: its upper bound; no
   candidate: the sum, over the terms cut short, of idf times the last impact read; impacts keep
   the avgdl of their writing, so the bound is as close as they are). When the last hit scores
   below it an unscored chunk could still beat it, and with `rounds` > 1 the search reads again,
   DEEPER times as deep (candidates and rescored alike).
Why not rescore every candidate that passes: Cranfield's long queries of common words have
thousands, all passing at 100k chunks, and each costs an index descent per common term: slower
than exact BM25. Why one read by default: at 100k chunks such queries are rarely certain after any
affordable depth, and each further read costs more than the first. `candidates_per_term` None
reads every posting (exact BM25). The defaults are measured at 10k and 100k chunks and on
Cranfield (BENCHMARKS.md, "Retrieval").

A search filtered on chunk columns (heading, scene, characters, pages) takes as candidates every
chunk of the filter holding a query word (GIN on the chunks' tsvector), all scored exactly, so a
narrow filter is never starved by the best postings of chunks outside it.

Indexing of one collection is serialised on its `bm25_collections` row (locked first by every
write), which keeps the counters exact and rules out deadlocks between concurrent documents.

A search over several collections of a tenant treats them as one corpus: N, avgdl and each
term's df are summed over the chosen collections, so scores are comparable across them.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bm25Parameters:
    """BM25's constants, and how many candidates a search scores (settings bm25_*)."""

    k1: float = 1.2
    b: float = 0.75
    # Best postings read per query term, at least; None reads them all (exact, 196 ms p50 at 100k
    # chunks). Chosen by measurement (BENCHMARKS.md, "Retrieval").
    candidates_per_term: int | None = 1000
    # ... and at least this many per result asked for, so a deep hybrid leg stays as exact.
    candidates_per_result: int = 10
    # Candidates rescored exactly, per result asked for: the most promising by partial score.
    rescored_per_result: int = 4
    # Reads of the candidates at most: each next one DEEPER times as deep, while a chunk left
    # unscored could beat the last hit. 1 by default (BENCHMARKS.md, "Retrieval"): up to ~10k chunks
    # one read returns 0.996 of exact BM25's top 10 and a second only makes the leg slower than
    # exact; at 100k chunks one read keeps 0.669 of it at 25 ms p50, two keep 0.962 at 98 ms.
    rounds: int = 1


# How much deeper each next round of candidates reads.
DEEPER = 4


BM25_DEFAULTS = Bm25Parameters()


def candidates_per_term(bm25: Bm25Parameters, limit: int) -> int | None:
    """How many of each query term's best postings a search of `limit` results reads."""
    if bm25.candidates_per_term is None:
        return None
    return max(bm25.candidates_per_term, bm25.candidates_per_result * limit)


def rescored(bm25: Bm25Parameters, limit: int) -> int:
    """How many candidates a search of `limit` results rescores exactly."""
    return bm25.rescored_per_result * limit
