"""Parley retrieval: the search index (full text + pgvector) over the chunks of documents."""
