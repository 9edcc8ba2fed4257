"""Data: vocabularies, corpora, batching and generated tasks."""
