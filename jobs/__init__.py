"""Runnable jobs (curate, ...) and the `sigma` command line."""
