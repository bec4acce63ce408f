"""Held-out perplexity on curated system shards, per kind of document (log, config, doc, qa, ...).

The held-out documents are the ones ``sigma train`` never trains on: those whose id hashes under
``held_out_fraction`` (``sigma.packing.is_held_out``), so a checkpoint is scored on text it has
not seen. Each document is read as in training (after an end-of-text token, ended by one), in
windows of the model's context. Per kind: next-token loss per token, its perplexity, and bits per
byte of text, which compares models with different tokenizers.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from sigma.backends.base import Backend
from sigma.packing import is_held_out
from sigma.shards import ShardSet


def held_out_documents(data_dirs: Sequence[str | Path], held_out_fraction: float, max_documents: int | None,
                       max_chars: int | None) -> dict[str, list[str]]:
    """Kind -> texts of held-out documents, in shard order, at most ``max_documents`` per kind."""
    by_kind: dict[str, list[str]] = defaultdict(list)
    for root in data_dirs:
        shard_set = ShardSet.open(root)
        for group in shard_set.row_groups:
            table = shard_set.read_row_group(group, columns=("id", "text", "kind"))
            for doc_id, text, kind in zip(*(table.column(c).to_pylist() for c in ("id", "text", "kind"))):
                kind = kind or "other"
                if not text or not is_held_out(doc_id, held_out_fraction):
                    continue
                if max_documents is None or len(by_kind[kind]) < max_documents:
                    by_kind[kind].append(text[:max_chars] if max_chars else text)
    return dict(sorted(by_kind.items()))


def evaluate_perplexity(backend: Backend, data_dirs: Sequence[str | Path], *, held_out_fraction: float = 0.01,
                        max_documents: int | None = 64, max_chars: int | None = 4000, window: int | None = None) -> dict:
    started = time.time()
    documents = held_out_documents(data_dirs, held_out_fraction, max_documents, max_chars)
    kinds, total = {}, [0.0, 0, 0, 0]
    for kind, texts in documents.items():
        scores = backend.score(texts, window)
        nll, tokens, nbytes = sum(s.nll for s in scores), sum(s.tokens for s in scores), sum(s.bytes for s in scores)
        kinds[kind] = _summary(nll, tokens, nbytes, len(texts))
        for i, value in enumerate((nll, tokens, nbytes, len(texts))):
            total[i] += value
    return {
        "task": "perplexity", "data": [str(d) for d in data_dirs], "held_out_fraction": held_out_fraction,
        "max_documents": max_documents, "max_chars": max_chars, **backend.describe(),
        "kinds": kinds, "all": _summary(*total), "seconds": round(time.time() - started, 2),
    }


def _summary(nll: float, tokens: int, nbytes: int, documents: int) -> dict:
    loss = nll / tokens if tokens else None
    return {"documents": documents, "tokens": tokens, "bytes": nbytes, "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)) if tokens else None,
            "bits_per_byte": nll / math.log(2) / nbytes if nbytes else None}
