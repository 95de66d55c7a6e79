"""Parley ingestion: collections, documents and their versions, chunking into sections."""
