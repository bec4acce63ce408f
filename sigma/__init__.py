"""Sigma: a decoder-only language model with DiffQKV attention (arXiv 2501.13629).

Importing this package is cheap: submodules load torch and friends only when used.
"""
