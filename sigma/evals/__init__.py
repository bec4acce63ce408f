"""Evaluations on system tasks: held-out perplexity per kind of document, and NL -> command."""
