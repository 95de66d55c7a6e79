"""Retrieval latency at scale: retrieval_lab's scale test, on its own.

    .venv/bin/python bench/retrieval_speed.py [FOLDER] [--size 100000] [--data DIR]

Adds SIZE synthetic chunks (halves of two abstracts of FOLDER joined, their MiniLM vectors
blended) to an embedded PostgreSQL migrated as retrieval's, written through parley.retrieval.store
as the Indexer writes them, then times the query embedding, keyword (the service's
Searcher.keyword_leg: from PostgreSQL, every posting, and candidates rescored at several depths in
one read or two, each with its top-10 overlap with exact BM25; then from the postings copied into
memory, keyword_index.py, after timing their load), vector (store.vector_search on MiniLM's
partial HNSW index per ef_search, with recall@10 against the same statement with index scans
off; the service's ef_search marked) and hybrid as the service runs it (Searcher.search with
the keyword leg from memory, the query embedded, then from the embedding cache; and with the
keyword leg from PostgreSQL). --data keeps
the index for the next run (building 100k takes minutes). Run it at --size 10000 and --size
100000; the lab's quality tables are retrieval_lab.py's.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package, from any folder

from bench import retrieval_lab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folder", nargs="?", type=Path, default=retrieval_lab.DEFAULT_FOLDER)
    parser.add_argument("--size", type=int, default=100_000, help="synthetic chunks to add")
    parser.add_argument("--data", type=Path, help="keep PostgreSQL's data here and reuse what is indexed there")
    args = parser.parse_args(argv)
    return retrieval_lab.main(
        [
            str(args.folder),
            "--scale",
            str(args.size),
            "--scale-only",
            *(["--data", str(args.data)] if args.data else []),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
