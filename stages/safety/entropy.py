"""How random a string looks: the test that lets a redactor take a value it has no rule for."""

from __future__ import annotations

import math
from collections import Counter


def shannon_entropy(value: str) -> float:
    """Bits per character of the value's own character distribution."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


def looks_random(value: str, min_length: int = 16, min_bits: float = 3.0) -> bool:
    """Long enough, high in entropy, and mixing character classes: `Xi5TCxtWzphTnTRt` and
    `26569dfb0f03daa2d6ff` are, `production_server_name` and `0000111122223333` are not."""
    if len(value) < min_length or value.isdigit() or value.isalpha():
        return False
    return shannon_entropy(value) >= min_bits
