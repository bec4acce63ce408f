"""Concrete stages: ingest sources, dedupe, quality filters."""
