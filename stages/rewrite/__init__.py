"""Rewrite and synthesis with language models: requests, prompt templates, output checks, the stage."""
