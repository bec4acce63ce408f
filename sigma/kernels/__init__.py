"""Inference kernels: decode attention over the asymmetric KV cache."""
